"""A ZooKeeper FastLeaderElection peer: pure core, wire codec, asyncio shell."""
