"""Input pipeline throughput: raw 1024 px PNGs vs a bare decode+resize loop vs prepared shards.

    python bench/input_pipeline.py [--data ROOT] [--images 96] [--source-size 1024] [--size 256]
        [--batch 32] [--rounds 3] [--min-images 256] [--channels 1] [--json]

Without --data it writes a SYNTHETIC root of `--images` PNGs at `--source-size` px (NIH's
1024) into a temporary folder. Measured in the same run, in interleaved rounds (median):

- bare: `tf.data` map of `tf.io.decode_png` + area resize over the same files, nothing else;
- raw: `keras_mamsf.data.pipeline.make_dataset` (evaluation mode) on those files;
- shards: `make_shard_dataset` over shards that `prepare_shards` wrote once (its time is printed
  apart, as a one-off cost).

images/s per core = images/s / the cores this process may use. Targets (issue 4): raw within
20% of bare (raw/bare >= 0.8); shards at least 10x raw.
"""

import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="an NIH-layout root to read (default: a synthetic one)")
    parser.add_argument("--images", type=int, default=96, help="synthetic images (without --data)")
    parser.add_argument("--source-size", type=int, default=1024, help="synthetic image side (without --data)")
    parser.add_argument("--size", type=int, default=256, help="training image side")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--channels", type=int, default=1, choices=[1, 3],
                        help="channels the pipelines hand on (default 1: the model tiles grayscale on the device)")
    parser.add_argument("--min-images", type=int, default=256,
                        help="images read per timing from PNGs (shards: 16x that)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from keras_mamsf.data import nih
    from keras_mamsf.data.pipeline import make_dataset
    from keras_mamsf.data.shards import make_shard_dataset, prepare_shards
    from keras_mamsf.data.synth import write_synthetic

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workdir = tempfile.mkdtemp(prefix="mamsf_bench_input_")
    root = args.data
    if root is None:
        root = os.path.join(workdir, "root")
        started = time.perf_counter()
        write_synthetic(root, images=args.images, size=args.source_size, seed=0)
        print(f"wrote {args.images} synthetic {args.source_size}px PNGs in {time.perf_counter() - started:.1f} s",
              flush=True)
    records = nih.read_nih(root).records
    paths = [r.path for r in records]
    started = time.perf_counter()
    summary = prepare_shards(root, os.path.join(workdir, "shards"), size=args.size)
    prepare_seconds = time.perf_counter() - started
    shard_splits = [name for name, count in summary["splits"].items() if count]
    shard_images = sum(summary["splits"].values())

    def bare():
        def load(path):
            image = tf.io.decode_png(tf.io.read_file(path), channels=1)
            return tf.image.resize(image, (args.size, args.size), method="area", antialias=True)

        dataset = tf.data.Dataset.from_tensor_slices(paths).map(load, num_parallel_calls=tf.data.AUTOTUNE)
        dataset = dataset.batch(args.batch)
        if args.channels == 3:
            dataset = dataset.map(lambda x: tf.tile(x, (1, 1, 1, 3)), num_parallel_calls=tf.data.AUTOTUNE)
        return dataset

    def raw():
        return make_dataset(records, args.size, args.batch, channels=args.channels)

    def shards():
        dataset = None
        for split in shard_splits:
            part = make_shard_dataset(os.path.join(workdir, "shards"), args.size, split, args.batch,
                                      channels=args.channels)
            dataset = part if dataset is None else dataset.concatenate(part)
        return dataset

    # Each source is repeated to at least this many images and timed from its first batch on,
    # so pipeline start-up (opening files, reading dataset_info) is not what is measured.
    minimum = {"bare": args.min_images, "raw": args.min_images, "shards": 16 * args.min_images}
    sources = {"bare": (bare, len(paths)), "raw": (raw, len(paths)), "shards": (shards, shard_images)}
    rates = {name: [] for name in sources}
    for round_index in range(args.rounds):
        names = list(sources)[round_index % 3:] + list(sources)[: round_index % 3]
        for name in names:
            build, count = sources[name]
            repeats = -(-minimum[name] // count)
            iterator = iter(build().repeat(repeats))
            first = next(iterator)
            started = time.perf_counter()
            seen = sum(int((batch[0] if isinstance(batch, tuple) else batch).shape[0]) for batch in iterator)
            elapsed = time.perf_counter() - started
            first_size = int((first[0] if isinstance(first, tuple) else first).shape[0])
            expected = count * repeats
            assert seen + first_size == expected, f"{name}: {seen + first_size} images, expected {expected}"
            rates[name].append(seen / elapsed)
    report = {
        "root": root if args.data else f"SYNTHETIC {args.images} x {args.source_size}px (temporary)",
        "size": args.size, "batch": args.batch, "channels": args.channels, "cores": cores, "rounds": args.rounds,
        "prepare_seconds": prepare_seconds,
        "images_per_second": {name: statistics.median(r) for name, r in rates.items()},
    }
    report["images_per_second_per_core"] = {n: v / cores for n, v in report["images_per_second"].items()}
    ips = report["images_per_second"]
    report["raw_over_bare"] = ips["raw"] / ips["bare"]
    report["shards_over_raw"] = ips["shards"] / ips["raw"]
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['root']} -> {args.size}px x {args.channels} channel(s), batch {args.batch}, {cores} core(s), "
          f"{args.rounds} rounds (median)")
    for name in sources:
        print(f"{name:>7}: {ips[name]:9.1f} images/s   {report['images_per_second_per_core'][name]:8.1f} per core")
    print(f"raw / bare   = {report['raw_over_bare']:.3f}   (target >= 0.8)")
    print(f"shards / raw = {report['shards_over_raw']:.1f}x  "
          f"(target >= 10x; prepare took {prepare_seconds:.1f} s once)")


if __name__ == "__main__":
    main()
