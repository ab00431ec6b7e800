"""The `room-world` builder's geometry: a box room with coloured objects, pinhole cameras and a per-pixel ray caster.

World frame: metres, z up, the room spans [0, width] × [0, depth] × [0, height]. Cameras follow ScanNet's pose files
(OpenCV axes: x right, y down, z forward): `R` and `t` map camera to world (`X_world = R · X_cam + t`, so `t` is the
camera centre), `K` holds pixels. A pixel's ray is `R · K⁻¹ · (u + ½, v + ½, 1)`, whose camera-z component is 1, so
the ray parameter of a hit *is* its camera-space depth (the z-depth ScanNet's depth maps hold).
Objects are axis-aligned boxes (a `panel` is a thin box on a wall), spheres and upright cylinders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Vector = tuple[float, float, float]
WALL_SHADES = (200, 185, 170, 215)  # grey of the walls x = 0, x = width, y = 0, y = depth
FLOOR_RGB, CEILING_RGB = (150, 120, 90), (235, 235, 235)
LIGHT = np.array([0.3, 0.5, 0.81]) / np.linalg.norm([0.3, 0.5, 0.81])


@dataclass(frozen=True)
class WorldObject:
    """One object: its colour and shape name, centre and full size along the world axes (x, y, z), in metres;
    `normal` is where its anchor faces (up for objects on the floor, into the room for a panel on a wall)."""

    colour: str
    rgb: tuple[int, int, int]
    shape: str  # box | sphere | cylinder | panel
    center: Vector
    size: Vector
    normal: Vector = (0.0, 0.0, 1.0)

    @property
    def name(self) -> str:
        """How questions name it ("red sphere"); unique within a room."""
        return f"{self.colour} {self.shape}"

    @property
    def radius(self) -> float:
        """Half the largest size: every point of the object is within this of its centre along any axis."""
        return max(self.size) / 2


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: camera-to-world rotation `R` (3×3) and centre `t` (3), intrinsics `K` (3×3), image side."""

    R: np.ndarray
    t: np.ndarray
    K: np.ndarray
    size: int


def look_at(position: Vector, target: Vector, fov_deg: float, size: int) -> Camera:
    """A camera at `position` looking at `target` (no roll: image x stays horizontal), square image of `size` pixels."""
    forward = np.subtract(target, position, dtype=np.float64)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    focal = size / 2 / math.tan(math.radians(fov_deg) / 2)
    K = np.array([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]])
    return Camera(np.stack([right, down, forward], axis=1), np.array(position, dtype=np.float64), K, size)


def camera_point(camera: Camera, point: Vector) -> np.ndarray:
    """A world point in the camera's frame (x right, y down, z = depth along the optical axis)."""
    return camera.R.T @ (np.asarray(point, dtype=np.float64) - camera.t)


def project(camera: Camera, point: Vector) -> tuple[float, float, float]:
    """(u, v, depth) of a world point: pixel coordinates (top-left corner of the image at 0, 0) and camera z."""
    x, y, z = camera_point(camera, point)
    u, v, _ = camera.K @ np.array([x / z, y / z, 1.0])
    return float(u), float(v), float(z)


def _rays(camera: Camera) -> np.ndarray:
    """World directions of every pixel's ray (H·W × 3), scaled so that their camera-z component is 1."""
    v, u = np.mgrid[0:camera.size, 0:camera.size].astype(np.float64) + 0.5
    pixels = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1)
    return pixels @ np.linalg.inv(camera.K).T @ camera.R.T


def _hit_box(origin: np.ndarray, rays: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slab test: (ray parameter of entry, inf on a miss; outward normal there) of an axis-aligned box seen from outside."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (low - origin) / rays, (high - origin) / rays
    near, far = np.fmin(t1, t2), np.fmax(t1, t2)
    entry, exit_ = np.nanmax(near, axis=1), np.nanmin(far, axis=1)
    hit = (entry <= exit_) & (entry > 0)
    axis = np.nanargmax(near, axis=1)
    normal = np.zeros_like(rays)
    normal[np.arange(len(rays)), axis] = -np.sign(rays[np.arange(len(rays)), axis])
    return np.where(hit, entry, np.inf), normal


def _hit_sphere(origin: np.ndarray, rays: np.ndarray, center: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """(nearest positive ray parameter, inf on a miss; outward unit normal there) of a sphere."""
    offset = origin - center
    a, b, c = (rays * rays).sum(1), 2 * rays @ offset, offset @ offset - radius**2
    disc = b * b - 4 * a * c
    root = np.sqrt(np.maximum(disc, 0.0))
    t = (-b - root) / (2 * a)
    t = np.where((disc >= 0) & (t > 0), t, np.inf)
    points = origin + rays * np.where(np.isfinite(t), t, 0.0)[:, None]
    return t, (points - center) / radius


def _hit_cylinder(origin: np.ndarray, rays: np.ndarray, center: np.ndarray, radius: float, height: float) -> tuple[np.ndarray, np.ndarray]:
    """(nearest positive ray parameter, inf on a miss; outward unit normal there) of an upright capped cylinder."""
    bottom, top = center[2] - height / 2, center[2] + height / 2
    ox, oy = origin[0] - center[0], origin[1] - center[1]
    dx, dy, dz = rays[:, 0], rays[:, 1], rays[:, 2]
    a, b, c = dx * dx + dy * dy, 2 * (ox * dx + oy * dy), ox * ox + oy * oy - radius**2
    disc = b * b - 4 * a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        side = (-b - np.sqrt(np.maximum(disc, 0.0))) / (2 * a)
        side_z = origin[2] + side * dz
        side = np.where((disc >= 0) & (a > 0) & (side > 0) & (side_z >= bottom) & (side_z <= top), side, np.inf)
        cap_z = np.where(origin[2] > top, top, bottom)
        cap = (cap_z - origin[2]) / dz
    cap_x, cap_y = ox + cap * dx, oy + cap * dy
    cap = np.where((cap > 0) & (cap_x**2 + cap_y**2 <= radius**2), cap, np.inf)
    t = np.fmin(side, cap)
    normal = np.zeros_like(rays)
    on_side = side <= cap
    normal[:, 0] = np.where(on_side, (ox + side * dx) / radius, 0.0)
    normal[:, 1] = np.where(on_side, (oy + side * dy) / radius, 0.0)
    normal[:, 2] = np.where(on_side, 0.0, np.sign(origin[2] - cap_z))
    return t, np.nan_to_num(normal)


def hit_object(obj: WorldObject, origin: np.ndarray, rays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ray parameter of the first hit, inf on a miss; outward normal there) of one object."""
    center = np.array(obj.center)
    if obj.shape == "sphere":
        return _hit_sphere(origin, rays, center, obj.size[0] / 2)
    if obj.shape == "cylinder":
        return _hit_cylinder(origin, rays, center, obj.size[0] / 2, obj.size[2])
    half = np.array(obj.size) / 2
    return _hit_box(origin, rays, center - half, center + half)


def _room_colour(points: np.ndarray, room: Vector) -> np.ndarray:
    """RGB of the room's surface at each exit point: floor, ceiling, or the grey of the nearest wall."""
    width, depth, height = room
    gaps = np.stack([points[:, 0], width - points[:, 0], points[:, 1], depth - points[:, 1], points[:, 2], height - points[:, 2]], axis=1)
    palette = np.array([(s, s, s) for s in WALL_SHADES] + [FLOOR_RGB, CEILING_RGB], dtype=np.float64)
    return palette[np.argmin(np.abs(gaps), axis=1)]


def render_view(camera: Camera, room: Vector, objects: list[WorldObject]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(RGB H×W×3 uint8, depth H×W in metres (camera z), object index H×W: −1 for the room) of one view."""
    rays = _rays(camera)
    origin = camera.t
    with np.errstate(divide="ignore", invalid="ignore"):  # the camera is inside the room: the first wall the ray leaves by
        exits = np.where(rays > 0, (np.array(room) - origin) / rays, np.where(rays < 0, -origin / rays, np.inf))
    depth = exits.min(axis=1)
    colour = _room_colour(origin + rays * depth[:, None], room)
    index = np.full(len(rays), -1)
    for k, obj in enumerate(objects):
        t, normal = hit_object(obj, origin, rays)
        nearer = t < depth
        shade = 0.55 + 0.45 * np.abs(normal @ LIGHT)
        colour[nearer] = np.outer(shade[nearer], obj.rgb)
        depth[nearer], index[nearer] = t[nearer], k
    side = camera.size
    rgb = np.clip(np.round(colour), 0, 255).astype(np.uint8).reshape(side, side, 3)
    return rgb, depth.reshape(side, side), index.reshape(side, side)
