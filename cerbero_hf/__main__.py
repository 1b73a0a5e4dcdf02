from cerbero_hf.cli import main

main()
