"""`python -m benchmarks`: the same command as `lungcnn bench`."""

from benchmarks.cli import app

if __name__ == "__main__":
    app()
