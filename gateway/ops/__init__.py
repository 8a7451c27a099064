"""What operators look at: the network's status, `huaico doctor`'s checks,
charts of a channel, and the read-only Datasette view.
"""
