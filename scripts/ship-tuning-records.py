"""Copies the best record of every workload from a MetaSchedule JSON database into the records shipped with
the service (compiler/build/tuning_records/<arch>-<mcpu>/, listed in compiler.build.tuning.SHIPPED_SETS), e.g. after a
long tuning run of the reference model:

    cd compiler/build/tuning_records
    python ../../../scripts/ship-tuning-records.py ~/.lookout-edge/tuning/x86_64-znver4 x86_64-znver4
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a folder with database_workload.json / database_tuning_record.json")
    parser.add_argument("destination", type=Path, help="the shipped-records folder to (re)write")
    args = parser.parse_args()
    import tvm.s_tir.meta_schedule as ms

    source = ms.database.JSONDatabase(work_dir=str(args.source), allow_missing=False)
    import tvm_ffi

    from compiler.build.tuning import write_record_set

    best_per_workload = {}
    for record in source.get_all_tuning_records():
        key = tvm_ffi.structural_hash(record.workload.mod)
        if record.run_secs and key not in best_per_workload:
            best_per_workload[key] = source.get_top_k(record.workload, 1)[0]
    write_record_set(args.destination, list(best_per_workload.values()))
    kept = len(best_per_workload)
    print(f"kept the best of {kept} workloads in {args.destination}")


if __name__ == "__main__":
    main()
