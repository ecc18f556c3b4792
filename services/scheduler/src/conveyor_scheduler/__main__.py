from conveyor_scheduler.cli import main

main()
