"""`python -m lungcnn.convert ...`: the same command as `lungcnn convert`."""

from lungcnn.convert.cli import main

main()
