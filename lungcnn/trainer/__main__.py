"""`python -m lungcnn.trainer`: the same command as `lungcnn train`."""

import typer

from lungcnn.trainer.cli import train_command


def main() -> None:
    typer.run(train_command)


if __name__ == "__main__":
    main()
