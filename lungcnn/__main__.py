"""`python -m lungcnn` is the `lungcnn` command."""

from lungcnn.cli import main

main()
