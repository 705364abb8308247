"""`python -m convert ...`: the same command as `lungcnn convert`."""

from convert.cli import main

main()
