"""Fast rendering: bounded-error decimation, COLLADA/URDF copies, the forward shader pack, and (sim)
observations that match the default renderer."""
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from training.common import fast_render as fr

NS = {"c": "http://www.collada.org/2005/11/COLLADASchema"}


def icosphere(subdivisions: int, radius: float = 0.05) -> fr.Mesh:
    """A closed sphere mesh with outward counter-clockwise faces."""
    t = (1 + 5 ** 0.5) / 2
    vertices = [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
                [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]]
    faces = [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
             [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5],
             [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]]
    vertices = [np.array(v, float) / np.linalg.norm(v) for v in vertices]
    for _ in range(subdivisions):
        middles, refined = {}, []
        for a, b, c in faces:
            ab, bc, ca = (_middle(vertices, middles, i, j) for i, j in ((a, b), (b, c), (c, a)))
            refined += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
        faces = refined
    return fr.Mesh(np.array(vertices) * radius, np.array(faces))


def _middle(vertices: list, middles: dict, i: int, j: int) -> int:
    key = (min(i, j), max(i, j))
    if key not in middles:
        point = vertices[i] + vertices[j]
        vertices.append(point / np.linalg.norm(point))
        middles[key] = len(vertices) - 1
    return middles[key]


def grid(n: int, size: float = 0.1) -> fr.Mesh:
    """A flat open square in z = 0, n x n cells, two triangles each."""
    xs = np.linspace(0, size, n + 1)
    vertices = np.array([[x, y, 0.0] for y in xs for x in xs])
    index = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = index[:-1, :-1].ravel(), index[:-1, 1:].ravel(), index[1:, 1:].ravel(), index[1:, :-1].ravel()
    return fr.Mesh(vertices, np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)]))


def edge_face_counts(mesh: fr.Mesh) -> np.ndarray:
    return fr.edge_table(mesh.faces)[1]


def test_sphere_keeps_shape_within_the_error_and_stays_closed() -> None:
    sphere = icosphere(5)  # 20480 faces, radius 5 cm
    light = fr.decimate(sphere, max_error=5e-4)
    assert len(light.faces) < 0.15 * len(sphere.faces)
    assert np.abs(np.linalg.norm(light.vertices, axis=1) - 0.05).max() <= 5e-4
    assert np.all(edge_face_counts(light) == 2)  # closed manifold
    normals, areas = fr.face_normals(*light)
    centroids = light.vertices[light.faces].mean(axis=1)
    assert np.all((normals * centroids).sum(axis=1) > 0) and areas.min() > 0  # outward, no slivers of 0 area


def test_tighter_error_keeps_more_faces() -> None:
    sphere = icosphere(4)
    assert len(fr.decimate(sphere, 1e-4).faces) > len(fr.decimate(sphere, 1e-3).faces)


def test_flat_square_collapses_to_a_few_faces_with_its_rim_in_place() -> None:
    square = grid(20)
    light = fr.decimate(square, max_error=1e-4)
    assert len(light.faces) <= 8
    assert np.allclose(light.vertices[:, 2], 0)
    assert np.allclose(light.vertices.min(axis=0)[:2], 0) and np.allclose(light.vertices.max(axis=0)[:2], 0.1)
    assert np.isclose(fr.face_normals(*light)[1].sum(), 0.01)  # same area: no hole, no overlap


def test_tiny_error_leaves_a_curved_mesh_almost_untouched() -> None:
    sphere = icosphere(3)
    assert len(fr.decimate(sphere, max_error=1e-7).faces) == len(sphere.faces)


DAE = """<?xml version="1.0" encoding="utf-8"?>
<COLLADA xmlns="http://www.collada.org/2005/11/COLLADASchema" version="1.4.1">
  <library_effects><effect id="grey-effect"><profile_COMMON><technique sid="common"><phong>
    <diffuse><color sid="diffuse">0.25 0.25 0.25 1</color></diffuse>
  </phong></technique></profile_COMMON></effect></library_effects>
  <library_materials><material id="grey"><instance_effect url="#grey-effect"/></material></library_materials>
  <library_geometries><geometry id="part">
    <mesh>
      <source id="part-positions"><float_array id="part-positions-array" count="{n_positions}">{positions}</float_array>
        <technique_common><accessor source="#part-positions-array" count="{n_vertices}" stride="3">
          <param name="X" type="float"/><param name="Y" type="float"/><param name="Z" type="float"/>
        </accessor></technique_common></source>
      <source id="part-normals"><float_array id="part-normals-array" count="3">0 0 1</float_array>
        <technique_common><accessor source="#part-normals-array" count="1" stride="3">
          <param name="X" type="float"/><param name="Y" type="float"/><param name="Z" type="float"/>
        </accessor></technique_common></source>
      <vertices id="part-vertices"><input semantic="POSITION" source="#part-positions"/></vertices>
      <lines count="1"><input semantic="VERTEX" source="#part-vertices" offset="0"/><p>0 {last}</p></lines>
      <triangles material="grey" count="{n_faces}">
        <input semantic="VERTEX" source="#part-vertices" offset="0"/>
        <input semantic="NORMAL" source="#part-normals" offset="1"/>
        <p>{indices}</p>
      </triangles>
    </mesh>
  </geometry></library_geometries>
  <library_visual_scenes><visual_scene id="scene"><node id="node0">
    <matrix sid="transform">1 0 0 0 0 1 0 0.003 0 0 1 0 0 0 0 1</matrix>
    <instance_geometry url="#part"><bind_material><technique_common>
      <instance_material symbol="grey" target="#grey"/></technique_common></bind_material></instance_geometry>
  </node></visual_scene></library_visual_scenes>
  <scene><instance_visual_scene url="#scene"/></scene>
</COLLADA>
"""


def write_dae(path: Path, mesh: fr.Mesh) -> None:
    indices = np.stack([mesh.faces, np.zeros_like(mesh.faces)], axis=2).ravel()
    path.write_text(DAE.format(n_positions=mesh.vertices.size, positions=" ".join(map(str, mesh.vertices.ravel())),
                               n_vertices=len(mesh.vertices), last=len(mesh.vertices) - 1, n_faces=len(mesh.faces),
                               indices=" ".join(map(str, indices))))


def test_collada_copy_keeps_materials_nodes_and_lines(tmp_path: Path) -> None:
    sphere = icosphere(4)
    write_dae(tmp_path / "part.dae", sphere)
    before, after = fr.decimate_collada(tmp_path / "part.dae", tmp_path / "light" / "part.dae", max_error=5e-4)
    assert before == len(sphere.faces) and after < before / 2

    original, light = (ET.parse(path).getroot() for path in (tmp_path / "part.dae", tmp_path / "light" / "part.dae"))
    for query in (".//c:library_effects", ".//c:library_materials", ".//c:library_visual_scenes"):
        assert ET.tostring(light.find(query, NS)) == ET.tostring(original.find(query, NS))
    (mesh,) = fr.read_collada(tmp_path / "light" / "part.dae")
    assert len(mesh.faces) == after
    assert light.find(".//c:triangles", NS).get("material") == "grey"
    normals = light.find(".//c:source[@id='part-normals']/c:float_array", NS)
    assert int(normals.get("count")) == 3 * after  # one flat normal per face
    line = np.array(light.find(".//c:lines/c:p", NS).text.split(), int)
    assert np.allclose(fr._positions(light.find(".//c:mesh", NS))[line], sphere.vertices[[0, -1]])


URDF = """<?xml version="1.0"?>
<robot name="arm">
  <link name="base">
    <visual><geometry><mesh filename="meshes/visual/part.dae"/></geometry></visual>
    <collision><geometry><mesh filename="meshes/collision/part.stl"/></geometry></collision>
  </link>
</robot>
"""


def test_light_urdf_is_a_cached_copy_with_linked_collision_meshes(tmp_path: Path) -> None:
    source = tmp_path / "robot"
    (source / "meshes" / "visual").mkdir(parents=True)
    (source / "meshes" / "collision").mkdir()
    write_dae(source / "meshes" / "visual" / "part.dae", icosphere(3))
    (source / "meshes" / "collision" / "part.stl").write_bytes(b"solid part")
    (source / "arm.urdf").write_text(URDF)
    (source / "arm.srdf").write_text("<robot name='arm'/>")

    light = fr.light_urdf(str(source / "arm.urdf"), cache_dir=tmp_path / "cache")
    assert light.name == "arm.urdf" and light.read_text() == URDF
    assert (light.parent / "arm.srdf").exists()
    collision = light.parent / "meshes" / "collision" / "part.stl"
    assert collision.is_symlink() and collision.resolve() == (source / "meshes" / "collision" / "part.stl").resolve()
    assert len(fr.read_collada(light.parent / "meshes" / "visual" / "part.dae")[0].faces) < 1280

    built = (light.parent / "meshes" / "visual" / "part.dae").stat().st_mtime_ns
    assert fr.light_urdf(str(source / "arm.urdf"), cache_dir=tmp_path / "cache") == light
    assert (light.parent / "meshes" / "visual" / "part.dae").stat().st_mtime_ns == built
    assert [path.name for path in (tmp_path / "cache").iterdir()] == [light.parent.name]  # no staging left


def test_real_panda_hand_mesh_decimates(tmp_path: Path) -> None:
    from mani_skill2 import PACKAGE_ASSET_DIR

    hand = PACKAGE_ASSET_DIR / "descriptions" / "franka_description" / "meshes" / "visual" / "hand.dae"
    before, after = fr.decimate_collada(hand, tmp_path / "hand.dae")
    assert before == 7078 and after < 0.6 * before
    assert len(fr.read_collada(tmp_path / "hand.dae")) == len(fr.read_collada(hand)) == 5


def test_forward_shader_pack_links_sapien_common_shaders(tmp_path: Path) -> None:
    shader = fr.forward_shader_dir(tmp_path)
    assert {path.name for path in shader.iterdir()} == {"gbuffer.vert", "gbuffer.frag"}
    assert (shader.parent / "common" / "lights.glsl").exists()
    assert fr.forward_shader_dir(tmp_path) == shader


@pytest.mark.parametrize("kwargs", [{"enable_shadow": True}, {"shader_dir": "trivial"}])
def test_fast_rendering_refuses_what_it_cannot_reproduce(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        with fr.fast_rendering("PickCube-v0", kwargs):
            pass


def _pointclouds(envs: list, states: list) -> list:
    clouds = []
    for env in envs:
        wrapper = env
        while type(wrapper).__name__ != "PointCloudObservationWrapper":
            wrapper = wrapper.env
        per_state = []
        for state in states:
            env.unwrapped.set_state(state)
            cloud = wrapper.observation(env.unwrapped.get_obs())["pointcloud"]
            per_state.append((cloud["xyzw"].copy(), cloud["rgb"].astype(int)))
        clouds.append(per_state)
    return clouds


@pytest.mark.sim
def test_fast_env_observations_match_the_default_renderer() -> None:
    from agent.vulkan_fallback import activate
    from training.common.envs import make_env

    obs = dict(obs_mode="pointcloud", control_mode="pd_ee_delta_pose")
    activate()  # as make_env does, before anything imports SAPIEN
    with fr.fast_rendering("PickCube-v0", {}) as kwargs:
        fast = make_env("PickCube-v0", **obs, **kwargs)
    shader_only = make_env("PickCube-v0", **obs, **kwargs)  # original meshes, forward shader
    default = make_env("PickCube-v0", **obs)  # built last: restores the `ibl` shader choice
    try:
        assert "fast_render" in fast.unwrapped._agent_cfg.urdf_path
        assert "fast_render" not in default.unwrapped._agent_cfg.urdf_path  # the patch is gone
        rng = np.random.default_rng(0)
        default.reset(seed=3)
        states = []
        for _ in range(4):
            default.step(rng.uniform(-1, 1, 7))
            states.append(default.unwrapped.get_state())
        reference, light, shaded = _pointclouds([default, fast, shader_only], states)
        for (xyzw, rgb), (xyzw_shaded, rgb_shaded), (xyzw_light, rgb_light) in zip(reference, shaded, light):
            assert np.abs(xyzw_shaded[:, :3] - xyzw[:, :3]).max() < 1e-5  # the shader alone changes nothing
            assert np.abs(rgb_shaded - rgb).max() <= 1
            assert np.array_equal(xyzw_light[:, 3], xyzw[:, 3])
            distance = np.linalg.norm(xyzw_light[:, :3] - xyzw[:, :3], axis=1)
            assert np.median(distance) < 1e-5 and np.mean(distance > 2e-3) < 0.005
            colour = np.abs(rgb_light - rgb).max(axis=1)
            assert colour.mean() < 1.0 and np.mean(colour > 20) < 0.01
    finally:
        for env in (fast, shader_only, default):
            env.close()
