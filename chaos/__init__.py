"""fle-chaos orchestrator: ensembles behind Toxiproxy, fault plans, invariants, reports."""
