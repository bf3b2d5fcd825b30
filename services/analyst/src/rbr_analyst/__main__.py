from rbr_analyst.main import main

main()
