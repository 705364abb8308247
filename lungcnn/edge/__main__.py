from lungcnn.edge.cli import main

main()
