"""`python -m lungcnn.benchmarks`: the same command as `lungcnn bench`."""

from lungcnn.benchmarks.cli import app

if __name__ == "__main__":
    app()
