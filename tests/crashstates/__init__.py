"""Crash-state enumeration for tributary (the method of ALICE, OSDI 2014).

Record the file-system operations of real workloads with strace, materialise every
crash state that a persistence model allows into a fresh folder, run recovery with
the real `tributary` binary, and check the exactly-once contract. See
`scripts/crash-states --help` and docs in `main.py`.
"""
