"""Secondary motion: points that follow a moving target through a damped spring, so cloth hems and
hair swing and lag behind the body. Deterministic semi-implicit Euler with fixed substeps."""

from __future__ import annotations

import numpy as np

SUBSTEPS = 4


def follow(
    targets: np.ndarray, fps: float, frequency: float | np.ndarray, damping: float = 0.3
) -> np.ndarray:
    """Positions of points pulled toward ``targets`` (frames, ..., 3), starting at rest on frame 0.

    ``frequency`` (Hz; a scalar or broadcastable to one value per point, e.g. lower toward a hair
    tip so it lags more) sets the stiffness, ``damping`` the damping ratio (below 1 overshoots).
    """
    targets = np.asarray(targets, dtype=np.float64)
    omega = 2 * np.pi * np.asarray(frequency, dtype=np.float64)[..., None]
    dt = 1.0 / (fps * SUBSTEPS)
    # Keep the integration stable however stiff the spring is asked to be.
    omega = np.minimum(omega, 0.5 / dt)
    position = targets[0].copy()
    velocity = np.zeros_like(position)
    out = np.empty_like(targets)
    out[0] = position
    for frame in range(1, len(targets)):
        for step in range(SUBSTEPS):
            w = (step + 1) / SUBSTEPS
            target = (1 - w) * targets[frame - 1] + w * targets[frame]
            velocity += dt * (omega**2 * (target - position) - 2 * damping * omega * velocity)
            position += dt * velocity
        out[frame] = position
    return out
