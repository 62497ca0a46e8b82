"""`mamsf inspect`: per split and per label counts of a ChestX-ray14 root (or of its CSV alone)."""

import json


def add_parser(commands, name):
    parser = commands.add_parser(
        name,
        help="count images, patients and positives per label and split; check splits for patient leaks",
        description="With --data ROOT: reads the NIH layout (CSV, split lists, PNGs), validates it and reports per "
        "split (official: NIH's lists with a patient-disjoint val part; or a random patient split) and per "
        "label the images, positives and patients, plus the patient-leak check. With --metadata CSV: the "
        "per-label counts of the CSV alone (no images needed).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="dataset root (NIH layout)")
    source.add_argument("--metadata", help="a Data_Entry_2017[_v2020].csv file")
    parser.add_argument("--on-bad-image", default="error", choices=["error", "skip"],
                        help="a missing or non-PNG image: stop with its name (error) or leave it out and count it")
    parser.add_argument("--verify", default="header", choices=["header", "decode"],
                        help="check each PNG's header (fast) or decode every image (catches truncated files)")
    parser.add_argument("--split", default="official", choices=["official", "patient"],
                        help="official NIH lists (+ val carved by patient) or a random 70/10/20 patient split")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of train_val patients held out as val")
    parser.add_argument("--view", default="all", choices=["all", "PA", "AP"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(run=run)
    return parser


def run(args):
    from keras_mamsf.data import nih, splits

    # DataError / SplitError are ValueErrors: `mamsf` prints them as one line and exits 1.
    if args.metadata:
        records, split_sets, skipped = splits.filter_view(nih.read_metadata(args.metadata), args.view), {}, {}
    else:
        index = nih.read_nih(args.data, on_bad_image=args.on_bad_image, verify=args.verify)
        records, skipped = splits.filter_view(index.records, args.view), index.skipped
        if args.split == "official" and index.lists:
            split_sets = splits.official_split(records, index.lists, args.val_fraction, args.seed)
        else:
            split_sets = splits.patient_split(records, seed=args.seed)
    report = counts(records)
    report["splits"] = {name: counts(part, summary_only=True) for name, part in split_sets.items()}
    report["leak"] = splits.leak_check(split_sets)
    report["skipped"] = skipped
    report["view"] = args.view
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0 if report["leak"]["ok"] else 1


def counts(records, summary_only=False):
    from keras_mamsf.labels import CHESTXRAY14_LABELS

    positives = {name: 0 for name in CHESTXRAY14_LABELS}
    patients_per_label = {name: set() for name in CHESTXRAY14_LABELS}
    no_finding = 0
    for record in records:
        found = False
        for name, value in zip(CHESTXRAY14_LABELS, record.labels):
            if value:
                positives[name] += 1
                patients_per_label[name].add(record.patient)
                found = True
        no_finding += not found
    report = {"images": len(records), "patients": len({r.patient for r in records}), "no_finding": no_finding,
              "labels": positives}
    if not summary_only:
        report["label_patients"] = {name: len(p) for name, p in patients_per_label.items()}
    return report


def print_report(report):
    print(f"{report['images']} images, {report['patients']} patients, {report['no_finding']} No Finding "
          f"(view {report['view']})")
    names = list(report["labels"])
    splits = list(report["splits"])
    print(f"{'label':<20}{'all':>8}" + "".join(f"{s:>8}" for s in splits))
    for name in names:
        per_split = "".join(f"{report['splits'][s]['labels'][name]:>8}" for s in splits)
        print(f"{name:<20}{report['labels'][name]:>8}" + per_split)
    for split in splits:
        part = report["splits"][split]
        print(f"split {split}: {part['images']} images, {part['patients']} patients")
    leak = report["leak"]
    print("leak check: " + ("ok, no patient in more than one split" if leak["ok"]
                            else f"FAILED, {leak['patients_in_several_splits']} patient(s) in several splits"))
    for reason, count in report["skipped"].items():
        print(f"skipped ({reason}): {count}")
