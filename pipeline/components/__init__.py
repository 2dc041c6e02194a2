"""Custom TFX components and executors (extension points, not forks of the stock ones)."""
