print("ledgerflow")
