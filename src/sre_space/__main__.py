from sre_space.cli import main

main()
