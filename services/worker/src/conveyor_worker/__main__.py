from conveyor_worker.cli import main

main()
