from intentloop.cli import main

main()
