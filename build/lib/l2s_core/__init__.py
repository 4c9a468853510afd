"""l2s: localise to segment.

A tested core for the study of Smith et al.: does a low-resolution localisation network plus a
cropped organ network beat a single full-resolution 3D U-Net? Arrays are ``(z, y, x)``
throughout; see the README's architecture section for where each step lives.
"""

__version__ = "0.1.0"
