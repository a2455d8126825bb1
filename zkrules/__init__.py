"""The rules of ZooKeeper-style election that both the node and the judge apply.

The node (`node/`) acts on these rules and the chaos judge (`chaos/`) checks
a run against them; if each kept its own copy, a bug fixed in one would
silently survive in the other, and the judge would grade the node against a
different rulebook. So they live here, once:

* `zkrules.vote`    votes, notifications, zxid arithmetic, `total_order_predicate`
* `zkrules.quorum`  quorum verifiers (majority, hierarchical groups/weights)
* `zkrules.txnlog`  the on-disk format (epoch files, CRC'd txn log) and a
                    read-only reader of it

This package imports nothing from `node/` or `chaos/` and does no I/O except
`txnlog`'s read-only file reading. `chaos/` may import it, never `node/`.
"""
