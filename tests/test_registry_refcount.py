"""Property: after any interleaving of subscribe / unsubscribe / disconnect across clients, upstream
holds exactly each instrument at the highest mode a remaining client needs, and the change stream
the registry reported adds up to that same state."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shmproxy.core.proxy.registry import SubscriptionRegistry

clients = st.integers(0, 3)
instruments = st.sampled_from([("NSE", "A"), ("NSE", "B"), ("NFO", "C")])
modes = st.integers(1, 3)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("sub"), clients, instruments, modes),
        st.tuples(st.just("unsub"), clients, instruments, modes),
        st.tuples(st.just("drop"), clients, st.none(), st.none()),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_upstream_is_always_what_remaining_clients_need(ops) -> None:
    registry = SubscriptionRegistry()
    held: dict[int, set[tuple[str, str, int]]] = {}
    broker: dict[tuple[str, str], int] = {}  # what a broker told only about changes would hold

    def apply(changes) -> None:
        for change in changes:
            key = (change.exchange, change.symbol)
            assert broker.get(key, 0) == change.old_mode  # every change starts from the broker's state
            if change.new_mode:
                broker[key] = change.new_mode
            else:
                broker.pop(key)

    for op, client, instrument, mode in ops:
        if op == "sub":
            held.setdefault(client, set()).add((*instrument, mode))
            apply([c for c in [registry.add(client, (*instrument, mode))] if c])
        elif op == "unsub":
            held.get(client, set()).discard((*instrument, mode))
            apply([c for c in [registry.remove(client, (*instrument, mode))] if c])
        else:
            held.pop(client, None)
            apply(registry.remove_client(client))
        needed: dict[tuple[str, str], int] = {}
        for keys in held.values():
            for exchange, symbol, m in keys:
                needed[(exchange, symbol)] = max(needed.get((exchange, symbol), 0), m)
        assert broker == needed
        assert {k: v for k, v in registry.upstream().items() if v} == needed
        for client_id, keys in held.items():
            assert registry.keys_of(client_id) == keys
            for key in keys:
                assert client_id in registry.subscribers(key)
