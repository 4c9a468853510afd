"""How the phantom tasks are generated: :class:`PhantomSettings`, the one record that
``l2s phantom``'s flags, a study's ``phantom`` section
(:class:`~l2s_core.study.params.PhantomOptions` extends it) and
:func:`~l2s_core.data.phantom.task.generate_phantom_task` share, with its defaults once. Light:
no renderer, no torch.

Example:
    >>> PhantomSettings(n_cases=4, shape=(16, 32, 32)).profile
    'fixed'
"""

from __future__ import annotations

__all__ = ["MIN_SHAPE", "PhantomSettings"]

from dataclasses import dataclass

from l2s_core.errors import ConfigError, check_choice
from l2s_core.vocabulary import PHANTOM_PROFILES, PhantomProfile

#: Smallest side of a ``fixed``-profile volume.
MIN_SHAPE = 8


@dataclass(frozen=True)
class PhantomSettings:
    """The generator settings of phantom tasks.

    Attributes:
        profile: ``fixed`` (every volume of ``shape``) or ``msd`` (the MSD tasks' case counts,
            shapes and spacings, :mod:`l2s_core.data.phantom.geometry`).
        n_cases: cases per organ (``fixed``: default 10; ``msd``: a cap on the MSD count).
        shape: ``(z, y, x)`` of every volume (``fixed``).
        scale: factor on every side (``msd``).
        seed: seed of the generator.

    Raises:
        ConfigError: an unknown profile, fewer than one case, a side below :data:`MIN_SHAPE`
            or a negative seed.
    """

    profile: PhantomProfile = "fixed"
    n_cases: int | None = None
    shape: tuple[int, int, int] = (32, 96, 96)
    scale: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        check_choice("profile", self.profile, PHANTOM_PROFILES)
        if len(self.shape) != 3 or min(self.shape) < MIN_SHAPE:
            raise ConfigError("shape", f"{self.shape} must be three sizes (z, y, x), each at least {MIN_SHAPE}")
        if self.n_cases is not None and self.n_cases < 1:
            raise ConfigError("n_cases", f"{self.n_cases} must be at least 1")
        if self.seed < 0:
            raise ConfigError("seed", f"{self.seed} must be non-negative")
