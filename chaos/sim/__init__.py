"""`chaos sim`: the plan suite in the deterministic simulator (issue 9).

:mod:`chaos.sim.world` puts a :class:`node.sim_zab.ZabSim` behind the target,
links and observer interfaces the step handlers use; :mod:`chaos.sim.runner`
runs one plan and seed through the stages of ``chaos run`` in virtual time;
:mod:`chaos.sim.check` says, before anything runs, which plans cannot be
simulated and where; :mod:`chaos.sim.command` is the command.
"""
