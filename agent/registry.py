"""The task table: how each ManiSkill2 0.5 task is observed, controlled and trained.

One source of truth for the agent (obs/control mode, preprocessing) and for training (algorithm,
what the task needs to run). Settings follow the challenge winners' recipe (REFERENCE section 3).
"""
from typing import Dict, NamedTuple, Optional, Tuple


class TaskSpec(NamedTuple):
    env_id: str
    family: str  # "rigid" or "soft"
    algorithm: str  # "ppo" (rigid-body) or "bc" (soft-body)
    control_mode: str
    obs_mode: str
    n_points: int  # points sampled from the fused camera cloud
    n_goal_points: int  # green points added around extra.goal_pos
    frame: str  # coordinate frame of points and positions: "ee" (end effector) or "base"
    assets: Tuple[str, ...]  # arguments of `python -m mani_skill2.utils.download_asset`
    needs_cuda: bool  # soft-body simulation (warp MPM) only runs on a CUDA GPU
    voxel_size: float = 0.0  # m; > 0: one point per occupied voxel before sampling (see agent.preprocessing)
    look_step: int = 0  # > 0: a slot reader reads the slot at this step and the policy remembers it
    # as its goal (agent.insertion); set by `looking`
    held_fit: bool = False  # a looking policy that also fits the object in its hand (agent.insertion.held_fit)

    @property
    def total_points(self) -> int:
        return self.n_points + self.n_goal_points

    @property
    def drops_robot(self) -> bool:
        """Whether preprocessing drops the robot's points (the `pointcloud+robot_seg` observation)."""
        return "robot_seg" in self.obs_mode

    @property
    def download_command(self) -> Optional[str]:
        """The shell command that downloads the task's assets, or None if it needs none."""
        commands = ["python -m mani_skill2.utils.download_asset " + uid for uid in self.assets]
        return " && ".join(commands) or None


GOAL_POINTS = 50  # green points around the goal, where a task has one


def looking(spec: TaskSpec, look_step: int, held_fit: bool = False) -> TaskSpec:
    """`spec` for a looking policy (the insertion add-on, `agent.insertion`): it reads its slot at `look_step` and
    sees it as a goal; with `held_fit`, also the pose of the object in its hand in that slot's frame."""
    if look_step < 1:
        raise ValueError("look_step must be >= 1, got {}".format(look_step))
    if spec.n_goal_points:
        raise ValueError("{} observes its goal; looking is for tasks that hide their slot".format(spec.env_id))
    return spec._replace(n_points=spec.total_points - GOAL_POINTS, n_goal_points=GOAL_POINTS, look_step=look_step,
                         held_fit=held_fit)


def with_points(spec: TaskSpec, total_points: int) -> TaskSpec:
    """`spec` for a policy that takes `total_points` points (its goal points included) instead of the task's default
    (`TASKS`): fewer points, a cheaper network call. ValueError unless some camera points remain."""
    if total_points <= spec.n_goal_points:
        raise ValueError("{} points: a {} policy takes its {} goal points and at least one camera point".format(
            total_points, spec.env_id, spec.n_goal_points))
    return spec._replace(n_points=total_points - spec.n_goal_points)


def reader_spec(spec: TaskSpec) -> TaskSpec:
    """The preprocessing of a task's slot reader: all points from the camera, no goal, no look."""
    return spec._replace(n_points=spec.total_points, n_goal_points=0, look_step=0, held_fit=False)


ARM = "pd_ee_delta_pose"
MOBILE = "base_pd_joint_vel_arm_pd_ee_delta_pose"


def _rigid(env_id: str, goal: bool = False, assets: Tuple[str, ...] = (), control_mode: str = ARM,
           frame: str = "ee") -> TaskSpec:
    return TaskSpec(env_id, "rigid", "ppo", control_mode, "pointcloud", 1200 - GOAL_POINTS * goal,
                    GOAL_POINTS * goal, frame, assets, False)


def _soft(env_id: str, assets: Tuple[str, ...] = ()) -> TaskSpec:
    return TaskSpec(env_id, "soft", "bc", ARM, "pointcloud", 1200, 0, "ee", assets, True)


TASKS: Dict[str, TaskSpec] = {
    spec.env_id: spec
    for spec in [
        _rigid("PickCube-v0", goal=True),
        _rigid("LiftCube-v0"),
        _rigid("StackCube-v0"),
        _rigid("PickSingleYCB-v0", goal=True, assets=("ycb",)),
        _rigid("PickSingleEGAD-v0", goal=True, assets=("egad",)),
        _rigid("PickClutterYCB-v0", goal=True, assets=("ycb", "pick_clutter_ycb")),
        _rigid("AssemblingKits-v0", assets=("assembling_kits",)),
        _rigid("PegInsertionSide-v0"),
        _rigid("PlugCharger-v0"),
        _rigid("PandaAvoidObstacles-v0", assets=("panda_avoid_obstacles",)),
        _rigid("TurnFaucet-v0", assets=("TurnFaucet-v0",)),
        _rigid("OpenCabinetDoor-v1", assets=("OpenCabinetDoor-v1",), control_mode=MOBILE, frame="base"),
        _rigid("OpenCabinetDrawer-v1", assets=("OpenCabinetDrawer-v1",), control_mode=MOBILE, frame="base"),
        _rigid("PushChair-v1", assets=("PushChair-v1",), control_mode=MOBILE, frame="base"),
        _rigid("MoveBucket-v1", assets=("MoveBucket-v1",), control_mode=MOBILE, frame="base"),
        _soft("Excavate-v0"),
        _soft("Fill-v0"),
        _soft("Hang-v0"),
        _soft("Pour-v0"),
        _soft("Pinch-v0", assets=("pinch",)),
        _soft("Write-v0", assets=("write",)),
    ]
}


def get_task(env_id: str) -> TaskSpec:
    """The task's spec; a clear KeyError for unknown env ids."""
    try:
        return TASKS[env_id]
    except KeyError:
        raise KeyError("Unknown env id {!r}. Known tasks: {}".format(env_id, ", ".join(sorted(TASKS)))) from None
