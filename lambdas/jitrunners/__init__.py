"""jitrunners: just-in-time, ephemeral GitHub Actions runners on EC2 spot instances."""

__version__ = "0.1.0"
