from conveyor_dashboard.cli import main

main()
