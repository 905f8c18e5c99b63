"""Fast point-cloud rendering on software Vulkan, for our training and test processes only.

On lavapipe a ManiSkill2 camera frame goes mostly to the Panda's visual meshes (CAD tessellations) and, once
those are light, to the per-pixel work of SAPIEN's deferred multi-pass `ibl` shader pack.
`fast_rendering(env_id, kwargs)` removes both:

- the robot loads a copy of its URDF whose visual COLLADA meshes are decimated by quadric edge
  collapse with a bounded error (`MAX_ERROR`): same nodes, materials and flat normals; collision
  meshes, link names and physics untouched (`light_urdf`, cached under `build/fast_render/`);
- the cameras use a one-pass forward shader that evaluates the `ibl` lighting model (SAPIEN's own
  `common/lights.glsl`, included) per fragment and writes the same "Color", "Position" and
  "Segmentation" textures: identical to `ibl` up to float rounding in scenes without shadows or
  transparent objects (ManiSkill2's defaults; shadows are refused, transparent objects would be
  drawn opaque).

    with fast_rendering("PickCube-v0", {}) as kwargs:
        env = gym.make("PickCube-v0", obs_mode="pointcloud", **kwargs)

ManiSkill2 stores the shader choice process-wide when an env is built and reads it whenever an env
(re)creates cameras: keep one env per process, or other envs' reconfigurations mix the packs.

The official evaluator never imports this module.
"""
import hashlib
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Tuple

import numpy as np
from scipy import sparse

# Metres: bound on the root-sum-square distance of a moved vertex to the original face planes it
# stands for. With 1 mm the Panda keeps 18 % of its triangles and its surfaces move <= 0.25 mm at the
# 99th percentile (1.2 mm at most), measured by sampling both surfaces.
MAX_ERROR = 1e-3
MAX_NORMAL_TURN_DEG = 30.0  # largest change of a face normal one collapse may cause
CACHE_DIR = Path(__file__).resolve().parents[2] / "build" / "fast_render"  # the repository's build/
_FORMAT_VERSION = "2"  # bump when the decimation changes, to regenerate cached meshes
_COLLADA = "http://www.collada.org/2005/11/COLLADASchema"
_NS = {"c": _COLLADA}
ET.register_namespace("", _COLLADA)  # write COLLADA's default namespace without a prefix


class Mesh(NamedTuple):
    vertices: np.ndarray  # (V, 3) float64
    faces: np.ndarray  # (F, 3) int64, counter-clockwise seen from outside


# ---------------------------------------------------------------------------------------------
# Quadric-error decimation
# ---------------------------------------------------------------------------------------------

def face_normals(vertices: np.ndarray, faces: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Unit normals (zero for degenerate faces) and areas of the faces."""
    cross = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    norm = np.linalg.norm(cross, axis=1)
    return cross / np.maximum(norm, 1e-300)[:, None], norm / 2


def _plane_quadrics(normals: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 4, 4) quadrics p p^T of the planes through `points` with unit `normals`."""
    planes = np.concatenate([normals, -(normals * points).sum(1, keepdims=True)], axis=1)
    return planes[:, :, None] * planes[:, None, :]


def edge_table(faces: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique undirected edges (E, 2), the number of faces on each, and each face corner's edge."""
    directed = np.stack([faces, np.roll(faces, -1, axis=1)], axis=2).reshape(-1, 2)
    edges, corner_edge, counts = np.unique(np.sort(directed, axis=1), axis=0, return_inverse=True,
                                           return_counts=True)
    return edges, counts, corner_edge.reshape(-1)


def vertex_quadrics(mesh: Mesh) -> np.ndarray:
    """(V, 4, 4) sum of the quadrics of each vertex's face planes and boundary-edge planes."""
    vertices, faces = mesh
    normals, _ = face_normals(vertices, faces)
    quadrics = np.zeros((len(vertices), 4, 4))
    face_q = _plane_quadrics(normals, vertices[faces[:, 0]])
    for corner in range(3):
        np.add.at(quadrics, faces[:, corner], face_q)
    # Boundary edges: a plane through the edge, perpendicular to its face, keeps open rims in place.
    edges, counts, corner_edge = edge_table(faces)
    boundary_corners = np.flatnonzero(counts[corner_edge] == 1)
    face_index, corner = np.divmod(boundary_corners, 3)
    start = faces[face_index, corner]
    end = faces[face_index, (corner + 1) % 3]
    side = np.cross(vertices[end] - vertices[start], normals[face_index])
    side /= np.maximum(np.linalg.norm(side, axis=1), 1e-300)[:, None]
    side_q = _plane_quadrics(side, vertices[start])
    np.add.at(quadrics, start, side_q)
    np.add.at(quadrics, end, side_q)
    return quadrics


def _quadric_cost(quadrics: np.ndarray, points: np.ndarray) -> np.ndarray:
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1)
    return np.einsum("ni,nij,nj->n", homogeneous, quadrics, homogeneous)


def collapse_targets(quadrics: np.ndarray, vertices: np.ndarray,
                     edges: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Best position and quadric cost for collapsing each edge: the quadric minimum (pulled
    slightly towards the midpoint where it is not unique), an endpoint or the midpoint."""
    q = quadrics[edges[:, 0]] + quadrics[edges[:, 1]]
    ends = vertices[edges]
    middle = ends.mean(axis=1)
    pull = 1e-6 * np.trace(q[:, :3, :3], axis1=1, axis2=2)[:, None, None] + 1e-12
    rhs = pull[:, :, 0] * middle - q[:, :3, 3]
    optimum = np.linalg.solve(q[:, :3, :3] + pull * np.eye(3), rhs[..., None])[..., 0]
    candidates = np.stack([optimum, middle, ends[:, 0], ends[:, 1]], axis=1)  # (E, 4, 3)
    costs = np.stack([_quadric_cost(q, candidates[:, k]) for k in range(4)], axis=1)
    costs = np.where(np.isfinite(costs), costs, np.inf)
    best = costs.argmin(axis=1)
    rows = np.arange(len(edges))
    return candidates[rows, best], np.maximum(costs[rows, best], 0.0)


def _adjacency(n_vertices: int, edges: np.ndarray) -> sparse.csr_matrix:
    rows = np.concatenate([edges[:, 0], edges[:, 1]])
    cols = np.concatenate([edges[:, 1], edges[:, 0]])
    return sparse.csr_matrix((np.ones(len(rows), np.int32), (rows, cols)), shape=(n_vertices, n_vertices))


def topology_safe(adjacency: sparse.csr_matrix, edges: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Edges whose collapse keeps the surface manifold (link condition; no interior edge that joins
    two rim vertices)."""
    common = np.asarray(adjacency[edges[:, 0]].multiply(adjacency[edges[:, 1]]).sum(axis=1)).ravel()
    on_rim = np.zeros(adjacency.shape[0], bool)
    on_rim[edges[counts == 1].ravel()] = True
    joins_rims = (counts == 2) & on_rim[edges[:, 0]] & on_rim[edges[:, 1]]
    return (counts <= 2) & (common == counts) & ~joins_rims


def independent_collapses(edges: np.ndarray, order: np.ndarray, adjacency: sparse.csr_matrix) -> np.ndarray:
    """Greedily pick edges (in `order`) no two of which touch a common face."""
    touched = np.zeros(adjacency.shape[0], bool)
    chosen = []
    indptr, neighbours = adjacency.indptr, adjacency.indices
    for e in order:
        a, b = edges[e]
        if touched[a] or touched[b]:
            continue
        chosen.append(e)
        touched[neighbours[indptr[a]:indptr[a + 1]]] = True
        touched[neighbours[indptr[b]:indptr[b + 1]]] = True
    return np.asarray(chosen, dtype=np.int64)


def collapse_keeps_normals(vertices: np.ndarray, faces: np.ndarray, edges: np.ndarray, targets: np.ndarray,
                           min_cos: float) -> np.ndarray:
    """Whether collapsing each edge (alone) to its target keeps every surviving face around it
    non-degenerate and within `min_cos` of its normal."""
    incidence = sparse.csr_matrix((np.ones(faces.size), (faces.ravel(), np.repeat(np.arange(len(faces)), 3))),
                                  shape=(len(vertices), len(faces)))
    around = (incidence[edges[:, 0]] + incidence[edges[:, 1]]).tocoo()
    survives = around.data == 1  # a face holding both ends vanishes
    edge_index, face_index = around.row[survives], around.col[survives]
    corners = faces[face_index]
    moved = (corners == edges[edge_index, :1]) | (corners == edges[edge_index, 1:])
    after = np.where(moved[..., None], targets[edge_index][:, None, :], vertices[corners])
    before_normals, _ = face_normals(vertices, faces)
    cross = np.cross(after[:, 1] - after[:, 0], after[:, 2] - after[:, 0])
    length = np.linalg.norm(cross, axis=1)
    good = (length > 0) & ((cross * before_normals[face_index]).sum(axis=1) >= min_cos * length)
    ok = np.ones(len(edges), bool)
    np.logical_and.at(ok, edge_index, good)
    return ok


def decimate(mesh: Mesh, max_error: float = MAX_ERROR, max_normal_turn_deg: float = MAX_NORMAL_TURN_DEG,
             max_rounds: int = 200) -> Mesh:
    """Collapse edges in rounds of independent collapses, cheapest first, while the accumulated
    quadric cost stays within `max_error`**2 and no face normal turns more than the limit."""
    vertices, faces = mesh.vertices.astype(np.float64).copy(), mesh.faces.astype(np.int64)
    quadrics = vertex_quadrics(mesh)
    min_cos = np.cos(np.radians(max_normal_turn_deg))
    for _ in range(max_rounds):
        edges, counts, _ = edge_table(faces)
        targets, costs = collapse_targets(quadrics, vertices, edges)
        adjacency = _adjacency(len(vertices), edges)
        candidates = np.flatnonzero((costs <= max_error ** 2) & topology_safe(adjacency, edges, counts))
        keeps = collapse_keeps_normals(vertices, faces, edges[candidates], targets[candidates], min_cos)
        candidates = candidates[keeps]
        chosen = independent_collapses(edges, candidates[np.argsort(costs[candidates], kind="stable")], adjacency)
        if len(chosen) == 0:
            break
        keep, gone = edges[chosen, 0], edges[chosen, 1]
        vertices[keep] = targets[chosen]
        quadrics[keep] += quadrics[gone]
        remap = np.arange(len(vertices))
        remap[gone] = keep
        faces = remap[faces]
        faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 2] != faces[:, 0])]
    return compact(Mesh(vertices, faces))


def compact(mesh: Mesh) -> Mesh:
    """Drop vertices no face uses."""
    used, faces = np.unique(mesh.faces, return_inverse=True)
    return Mesh(mesh.vertices[used], faces.reshape(-1, 3))


# ---------------------------------------------------------------------------------------------
# COLLADA meshes
# ---------------------------------------------------------------------------------------------

def _float_source(mesh_element: ET.Element, reference: str) -> ET.Element:
    return mesh_element.find("c:source[@id='{}']".format(reference.lstrip("#")), _NS)


def _triangle_mesh(geometry: ET.Element) -> Tuple[ET.Element, ET.Element, Mesh]:
    """The geometry's <mesh>, its only <triangles> and their positions/faces; ValueError when the
    geometry is anything else (textured, polygons, several triangle sets)."""
    mesh_element = geometry.find("c:mesh", _NS)
    primitives = [child for child in mesh_element if child.tag.split("}")[1] in ("triangles", "polylist", "polygons")]
    if len(primitives) != 1 or primitives[0].tag != "{%s}triangles" % _COLLADA:
        raise ValueError("not a single <triangles> primitive")
    for lines in mesh_element.findall("c:lines", _NS):
        if [element.get("semantic") for element in lines.findall("c:input", _NS)] != ["VERTEX"]:
            raise ValueError("<lines> with inputs other than VERTEX")
    triangles = primitives[0]
    inputs = {element.get("semantic"): element for element in triangles.findall("c:input", _NS)}
    if set(inputs) != {"VERTEX", "NORMAL"}:
        raise ValueError("inputs {} (only VERTEX and NORMAL are supported)".format(sorted(inputs)))
    stride = 1 + max(int(element.get("offset")) for element in inputs.values())
    indices = np.array(triangles.find("c:p", _NS).text.split(), dtype=np.int64).reshape(-1, 3, stride)
    return mesh_element, triangles, Mesh(_positions(mesh_element), indices[:, :, int(inputs["VERTEX"].get("offset"))])


def _position_source(mesh_element: ET.Element) -> ET.Element:
    position_input = mesh_element.find("c:vertices/c:input[@semantic='POSITION']", _NS)
    return _float_source(mesh_element, position_input.get("source"))


def _positions(mesh_element: ET.Element) -> np.ndarray:
    return np.array(_position_source(mesh_element).find("c:float_array", _NS).text.split(), np.float64).reshape(-1, 3)


def _set_float_source(source: ET.Element, values: np.ndarray) -> None:
    array = source.find("c:float_array", _NS)
    array.text = " ".join("{:.7g}".format(value) for value in values.ravel())
    array.set("count", str(values.size))
    source.find("c:technique_common/c:accessor", _NS).set("count", str(len(values)))


def _replace_geometry(mesh_element: ET.Element, triangles: ET.Element, mesh: Mesh) -> None:
    """Write `mesh` into the geometry with one flat normal per face (like the CAD originals);
    loose <lines> keep their original vertices, appended after the mesh's."""
    vertices = [mesh.vertices]
    original = _positions(mesh_element)
    for lines in mesh_element.findall("c:lines", _NS):
        used, remapped = np.unique(np.array(lines.find("c:p", _NS).text.split(), np.int64), return_inverse=True)
        lines.find("c:p", _NS).text = " ".join(map(str, remapped + sum(map(len, vertices))))
        vertices.append(original[used])
    _set_float_source(_position_source(mesh_element), np.concatenate(vertices))
    inputs = {element.get("semantic"): element for element in triangles.findall("c:input", _NS)}
    inputs["VERTEX"].set("offset", "0")
    inputs["NORMAL"].set("offset", "1")
    normals, _ = face_normals(mesh.vertices, mesh.faces)
    _set_float_source(_float_source(mesh_element, inputs["NORMAL"].get("source")), normals)
    corner_normal = np.repeat(np.arange(len(mesh.faces))[:, None], 3, axis=1)
    triangles.find("c:p", _NS).text = " ".join(map(str, np.stack([mesh.faces, corner_normal], axis=2).ravel()))
    triangles.set("count", str(len(mesh.faces)))


def decimate_collada(source: Path, target: Path, max_error: float = MAX_ERROR) -> Tuple[int, int]:
    """Copy a COLLADA file with each triangle geometry decimated; (faces before, faces after)."""
    tree = ET.parse(source)
    before = after = 0
    for geometry in tree.getroot().iterfind(".//c:library_geometries/c:geometry", _NS):
        try:
            mesh_element, triangles, mesh = _triangle_mesh(geometry)
        except ValueError:
            continue  # left as it is
        light = decimate(mesh, max_error)
        before, after = before + len(mesh.faces), after + len(light.faces)
        _replace_geometry(mesh_element, triangles, light)
    target.parent.mkdir(parents=True, exist_ok=True)
    tree.write(target, encoding="utf-8", xml_declaration=True)
    return before, after


def read_collada(path: Path) -> List[Mesh]:
    """The triangle geometries of a COLLADA file (in their own frames)."""
    meshes = []
    for geometry in ET.parse(path).getroot().iterfind(".//c:library_geometries/c:geometry", _NS):
        try:
            meshes.append(_triangle_mesh(geometry)[2])
        except ValueError:
            continue
    return meshes


# ---------------------------------------------------------------------------------------------
# Robot description with light visual meshes
# ---------------------------------------------------------------------------------------------

def _mesh_files(urdf: Path) -> List[Tuple[str, bool]]:
    """Relative mesh filenames of a URDF, each with whether it is a visual COLLADA mesh."""
    files = {}
    for kind in ("visual", "collision"):
        for mesh in ET.parse(urdf).getroot().iterfind(".//{}/geometry/mesh".format(kind)):
            name = mesh.get("filename")
            if not os.path.isabs(name) and "://" not in name:
                files[name] = files.get(name, False) or (kind == "visual" and name.lower().endswith(".dae"))
    return sorted(files.items())


def _cache_key(urdf: Path, max_error: float) -> str:
    digest = hashlib.sha256("{}|{!r}".format(_FORMAT_VERSION, max_error).encode())
    digest.update(urdf.read_bytes())
    for name, visual in _mesh_files(urdf):
        if visual:
            digest.update(name.encode() + (urdf.parent / name).read_bytes())
    return digest.hexdigest()[:16]


def _publish(staging: Path, target: Path) -> None:
    """Move a finished cache entry into place; another process may have published it first."""
    staging.chmod(0o755)  # mkdtemp makes it private
    try:
        os.rename(staging, target)
    except OSError:
        if not target.exists():
            raise


def light_urdf(urdf_path: str, max_error: float = MAX_ERROR, cache_dir: Path = CACHE_DIR) -> Path:
    """A copy of the URDF (and its SRDF) in `cache_dir` whose visual COLLADA meshes are decimated;
    other meshes are symlinks to the originals. Built once; safe when processes race to build."""
    urdf = Path(urdf_path).resolve()
    target = cache_dir / "{}-{}".format(urdf.stem, _cache_key(urdf, max_error))
    if (target / urdf.name).exists():
        return target / urdf.name
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=cache_dir))
    try:
        for name, visual in _mesh_files(urdf):
            destination = staging / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            if visual:
                decimate_collada(urdf.parent / name, destination, max_error)
            else:
                destination.symlink_to(urdf.parent / name)
        for description in (urdf, urdf.with_suffix(".srdf")):
            if description.exists():
                shutil.copyfile(description, staging / description.name)
        _publish(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target / urdf.name


def _configure_light_agent(configure: Callable[[Any], None], max_error: float) -> Callable[[Any], None]:
    """An env's `_configure_agent` that then points the agent config at the light URDF."""
    from mani_skill2 import format_path

    def configure_agent(env) -> None:
        configure(env)
        if env._agent_cfg is not None:
            env._agent_cfg.urdf_path = str(light_urdf(format_path(env._agent_cfg.urdf_path), max_error))

    return configure_agent


@contextmanager
def fast_robot_meshes(env_id: str, max_error: float = MAX_ERROR) -> Iterator[None]:
    """While active, constructing `env_id` gives it a robot with light visual meshes (the env keeps
    them across reconfigurations: the path is in its agent config)."""
    import mani_skill2.envs  # noqa: F401  (registers the environments)
    from mani_skill2.utils.registration import REGISTERED_ENVS

    env_class = REGISTERED_ENVS[env_id].cls
    own = env_class.__dict__.get("_configure_agent")
    env_class._configure_agent = _configure_light_agent(env_class._configure_agent, max_error)
    try:
        yield
    finally:
        if own is None:
            del env_class._configure_agent
        else:
            env_class._configure_agent = own


# ---------------------------------------------------------------------------------------------
# One-pass forward shader with the `ibl` pack's lighting
# ---------------------------------------------------------------------------------------------

_CAMERA_BUFFER = """
layout(set = 0, binding = 0) uniform CameraBuffer {
  mat4 viewMatrix;
  mat4 projectionMatrix;
  mat4 viewMatrixInverse;
  mat4 projectionMatrixInverse;
  float width;
  float height;
} cameraBuffer;

layout(set = 1, binding = 0) uniform ObjectBuffer {
  mat4 modelMatrix;
  uvec4 segmentation;
  float transparency;
  int shadeFlat;
} objectBuffer;
"""

_VERTEX_SHADER = "#version 450\n" + _CAMERA_BUFFER + """
layout(location = 0) in vec3 position;
layout(location = 1) in vec3 normal;
layout(location = 2) in vec2 uv;
layout(location = 3) in vec3 tangent;
layout(location = 4) in vec3 bitangent;

layout(location = 0) out vec4 outPosition;
layout(location = 1) out vec2 outUV;
layout(location = 2) out flat uvec4 outSegmentation;
layout(location = 3) out mat3 outTbn;

void main() {
  mat4 modelView = cameraBuffer.viewMatrix * objectBuffer.modelMatrix;
  mat3 normalMatrix = mat3(transpose(inverse(modelView)));
  outPosition = modelView * vec4(position, 1);
  outUV = uv;
  outSegmentation = objectBuffer.segmentation;
  outTbn = mat3(normalize(normalMatrix * tangent), normalize(normalMatrix * bitangent),
                normalize(normalMatrix * normal));
  gl_Position = cameraBuffer.projectionMatrix * outPosition;
}
"""

_FRAGMENT_SHADER = """#version 450
layout (constant_id = 0) const int NUM_DIRECTIONAL_LIGHTS = 3;
layout (constant_id = 1) const int NUM_POINT_LIGHTS = 10;
layout (constant_id = 6) const int NUM_SPOT_LIGHTS = 10;

#include "../common/lights.glsl"
""" + _CAMERA_BUFFER + """
layout(set = 2, binding = 0) uniform MaterialBuffer {
  vec4 emission;
  vec4 baseColor;
  float fresnel;
  float roughness;
  float metallic;
  float transmission;
  float ior;
  float transmissionRoughness;
  int textureMask;
  int padding1;
} materialBuffer;

layout(set = 2, binding = 1) uniform sampler2D colorTexture;
layout(set = 2, binding = 2) uniform sampler2D roughnessTexture;
layout(set = 2, binding = 3) uniform sampler2D normalTexture;
layout(set = 2, binding = 4) uniform sampler2D metallicTexture;
layout(set = 2, binding = 5) uniform sampler2D emissionTexture;

layout(set = 3, binding = 0) uniform SceneBuffer {
  vec4 ambientLight;
  DirectionalLight directionalLights[3];
  SpotLight spotLights[10];
  PointLight pointLights[10];
  SpotLight texturedLights[1];
} sceneBuffer;
layout(set = 3, binding = 1) uniform samplerCube samplerEnvironment;
layout(set = 3, binding = 2) uniform sampler2D samplerBRDFLUT;

layout(location = 0) in vec4 inPosition;
layout(location = 1) in vec2 inUV;
layout(location = 2) in flat uvec4 inSegmentation;
layout(location = 3) in mat3 inTbn;

layout(location = 0) out vec4 outColor;
layout(location = 1) out vec4 outPosition;
layout(location = 2) out uvec4 outSegmentation;

vec3 surfaceNormal() {
  if (objectBuffer.shadeFlat != 0) {
    return -normalize(cross(dFdx(inPosition).xyz, dFdy(inPosition).xyz));
  }
  if ((materialBuffer.textureMask & 4) != 0) {
    return normalize(inTbn * (texture(normalTexture, inUV).xyz * 2 - 1));
  }
  return normalize(inTbn[2]);  // meshes without tangents have only this column defined
}

vec3 environment(vec3 worldDirection, float lod) {  // SAPIEN's cube-map axes
  return textureLod(samplerEnvironment, vec3(-worldDirection.y, worldDirection.z, -worldDirection.x), lod).rgb;
}

void main() {
  int mask = materialBuffer.textureMask;
  vec4 albedo = (mask & 1) != 0 ? texture(colorTexture, inUV) : materialBuffer.baseColor;
  if (albedo.a == 0) {
    discard;
  }
  float specular = materialBuffer.fresnel * 0.08;
  float roughness = (mask & 2) != 0 ? texture(roughnessTexture, inUV).r : materialBuffer.roughness;
  float metallic = (mask & 8) != 0 ? texture(metallicTexture, inUV).r : materialBuffer.metallic;
  vec3 emission = ((mask & 16) != 0 ? texture(emissionTexture, inUV) : materialBuffer.emission).rgb;

  vec3 normal = surfaceNormal();
  vec3 position = inPosition.xyz / inPosition.w;
  vec3 camDir = -normalize(position);
  vec3 diffuseAlbedo = albedo.rgb * (1 - metallic);
  vec3 fresnel = specular * (1 - metallic) + albedo.rgb * metallic;
  mat3 viewRotation = mat3(cameraBuffer.viewMatrix);

  vec3 color = emission;
  for (int i = 0; i < NUM_POINT_LIGHTS; ++i) {
    PointLight light = sceneBuffer.pointLights[i];
    vec3 l = (cameraBuffer.viewMatrix * vec4(light.position.xyz, 1)).xyz - position;
    color += computePointLight(light.emission.rgb, l, normal, camDir, diffuseAlbedo, roughness, fresnel);
  }
  for (int i = 0; i < NUM_DIRECTIONAL_LIGHTS; ++i) {
    DirectionalLight light = sceneBuffer.directionalLights[i];
    color += computeDirectionalLight(viewRotation * light.direction.xyz, light.emission.rgb,
                                     normal, camDir, diffuseAlbedo, roughness, fresnel);
  }
  for (int i = 0; i < NUM_SPOT_LIGHTS; ++i) {
    SpotLight light = sceneBuffer.spotLights[i];
    vec3 l = (cameraBuffer.viewMatrix * vec4(light.position.xyz, 1)).xyz - position;
    color += computeSpotLight(light.emission.a, light.direction.a, viewRotation * light.direction.xyz,
                              light.emission.rgb, l, normal, camDir, diffuseAlbedo, roughness, fresnel);
  }

  mat3 toWorld = mat3(cameraBuffer.viewMatrixInverse);
  vec3 worldNormal = toWorld * normal;
  vec3 worldView = toWorld * camDir;
  vec2 brdf = texture(samplerBRDFLUT, vec2(roughness, max(dot(worldNormal, worldView), 0))).xy;
  color += environment(worldNormal, 5) * diffuseAlbedo / 3.1415926535;
  vec3 reflected = 2 * dot(worldNormal, worldView) * worldNormal - worldView;
  color += environment(reflected, roughness * 5) * (fresnel * brdf.x + brdf.y);
  color += sceneBuffer.ambientLight.rgb * albedo.rgb;

  outColor = clamp(vec4(pow(color, vec3(1 / 2.2)), 1), vec4(0), vec4(1));
  outPosition = inPosition;
  outSegmentation = inSegmentation;
}
"""


def forward_shader_dir(cache_dir: Path = CACHE_DIR) -> Path:
    """The forward shader pack (written once), next to a link to SAPIEN's `common` shader folder."""
    import sapien.core

    common = Path(sapien.core.__file__).resolve().parent.parent / "vulkan_shader" / "common"
    key = hashlib.sha256((_VERTEX_SHADER + _FRAGMENT_SHADER + str(common)).encode()).hexdigest()[:16]
    root = cache_dir / "shader-{}".format(key)
    if (root / "forward" / "gbuffer.frag").exists():
        return root / "forward"
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=cache_dir))
    try:
        (staging / "common").symlink_to(common, target_is_directory=True)
        (staging / "forward").mkdir()
        (staging / "forward" / "gbuffer.vert").write_text(_VERTEX_SHADER)
        (staging / "forward" / "gbuffer.frag").write_text(_FRAGMENT_SHADER)
        _publish(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root / "forward"


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------

@contextmanager
def fast_rendering(env_id: str, env_kwargs: Dict[str, Any],
                   max_error: float = MAX_ERROR) -> Iterator[Dict[str, Any]]:
    """Env kwargs with the forward shader; while active, constructing `env_id` loads light robot
    meshes. Refuses kwargs the forward shader cannot reproduce (shadows, another shader pack)."""
    if env_kwargs.get("enable_shadow"):
        raise ValueError("fast rendering does not draw shadows; use the default renderer with enable_shadow")
    if env_kwargs.get("shader_dir", "ibl") != "ibl":
        raise ValueError("fast rendering replaces the 'ibl' shader pack, not {!r}".format(env_kwargs["shader_dir"]))
    with fast_robot_meshes(env_id, max_error):
        yield dict(env_kwargs, shader_dir=str(forward_shader_dir()))
