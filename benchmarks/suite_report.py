"""The GPU suite's summary.md: a table of the stages, then each stage's figures."""


def table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def markdown(summary):
    s = summary
    lines = [f"# GPU suite{' (--dry: plumbing on a CPU, toy sizes, no figures of worth)' if s['dry'] else ''}", "",
             f"{s['machine'] or 'machine not read yet'}", "",
             f"Started {s['started']}; budget {s['budget_s']:g} s; elapsed {s['elapsed_s']:g} s; "
             f"{'finished' if s['finished'] else s.get('ended', 'running (or stopped before its end)')}.", "",
             table(["stage", "status", "cap s", "seconds", "note"],
                   [[name, e["status"] + (" (earlier run)" if e.get("from_earlier_run") else ""), e.get("cap_s", ""),
                     e.get("seconds", ""), e.get("note") or e.get("error") or ""] for name, e in s["stages"].items()])]
    for name, entry in s["stages"].items():
        result = entry.get("result") or {}
        if not result:
            continue
        lines += ["", f"## {name}", ""]
        lines += SECTIONS[name](result)
    if s.get("optional_modules_imported") is not None:
        lines += ["", f"Ray, W&B, codecarbon, torchattacks imported by the suite: "
                      f"{', '.join(s['optional_modules_imported']) or 'none'}."]
    return "\n".join(lines) + "\n"


def section_tests(r):
    lines = []
    if "pytest" in r:
        t = r["pytest"]
        counts = ", ".join(f"{n} {k}" for k, n in sorted(t["counts"].items())) or "no test outcome read"
        state = f"timed out after {t['timed_out_after_s']} s" if t["timed_out_after_s"] else f"exit {t['returncode']}"
        lines += [f"`{t['command']}`: {state}; {counts}.", ""]
        lines += [table(["test", "outcome"], sorted(t["tests"].items())) if t["tests"] else "(no outcomes)", ""]
        if t["returncode"] != 0:
            lines += ["```", t["output_tail"][-1500:], "```", ""]
    if r.get("trials"):
        rows = []
        for kind, f in r["trials"].items():
            mib = f"{f['memory_bytes'] / 2**20:.0f} MiB" if f.get("memory_bytes") else ""
            rows.append([kind, f.get("status"), _num(f.get("final_test_acc"), 3), mib, f.get("memory_method", ""),
                         f"{f.get('precision', '')} + {f.get('memory_format', '')}", _num(f.get("images_per_second"), 0),
                         f.get("seconds", ""), ", ".join(f.get("failed_checks") or []) or "ok",
                         f.get("error", "")])
        lines += ["One short `run_trial` per kind:", "",
                  table(["kind", "status", "final test acc", "memory", "memory method", "precision + layout", "img/s",
                         "seconds", "failed checks", "error"], rows)]
    return lines


def section_rows(note):
    def render(r):
        lines = [note(r), ""] if note(r) else []
        if r.get("headline"):
            lines += [f"**{r['headline']}**", ""]
        return lines + [table(r["headers"], r["rows"]) if r.get("rows") else "(nothing measured)"]
    return render


def section_record(r):
    lines = [f"{r['file']}: {r['kind']}, images/s {r['images_per_second']}; best packing "
             f"{ {a: (b['trials_per_device'], b['speedup']) for a, b in r['packing'].items()} or 'not measured'}"
             f" (arch: (trials per GPU, trials/hour over one))."]
    if r.get("grid"):
        g = r["grid"]
        lines += ["", f"`sweeps/run.py --grid {g['grid']} --dry-run` on this device ({g['trials']} trials; "
                      f"the whole table in {g['file']}):", "", *[f"    {line}" for line in g["lines"]]]
    if r.get("targets"):
        lines += ["", table(["target", "measured", "goal", "met"],
                            [[n, "not measured" if v is None else v, g, "" if m is None else ("yes" if m else "no")]
                             for n, v, g, m in r["targets"]])]
    return lines


def section_fusion(r):
    lines = []
    if r.get("convs"):
        lines += ["k separate convolutions against one grouped convolution (groups = k), forward and both "
                  "gradients, TFLOP/s, cuDNN's autotuner off and on:", "",
                  table(["shape", "k", "autotuned", "separate", "grouped", "grouped / separate"],
                        [[c.get("shape", f"{c['channels']}@{c['px']}"), c["k"], "yes" if c.get("autotuned") else "no",
                          _num(c["separate_tflops"], 2), _num(c["grouped_tflops"], 2),
                          _num(c["grouped_tflops"] / c["separate_tflops"], 2)] for c in r["convs"]]), ""]
    if r.get("rows"):
        lines += ["Packs on synthetic on-device images (epochs after the first):", "", table(r["headers"], r["rows"])]
    if "faster" in r:
        ratio = r.get("fused_over_separate")
        lines += ["", f"Fused faster than separate members: {'yes' if r['faster'] else 'no'}"
                      + (f" ({ratio:.2f}x)" if ratio else "")
                      + ("" if r.get("fair", True) else "; not a fair comparison (a pack did not train on its "
                                                        "intended path, see 'trained as')")
                      + "; `fuse: auto` follows this."]
    return lines


def _num(value, digits):
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else ""


SECTIONS = {
    "tests": section_tests,
    "fusion": section_fusion,
    "throughput": section_rows(lambda r: f"batch {r['batch']}, {r['repeats']} repetitions of "
                                         f"{sorted({a['steps'] for a in r['archs'].values()}) or '?'} steps; "
                                         f"ratios to the plain fp32 loop of the same repetition, median (min-max)"
                                         f"{'' if r['compiled'] else '; torch.compile left out (--dry)'}"
                                         + "".join(f"; torch.compile failed on {a}: {e[:300]}"
                                                   for a, e in r.get("compile_errors", {}).items())),
    "speedup": section_rows(lambda r: f"batch {r['batch']}, {r['precision']} + {r['memory_format']}, "
                                      f"{r['repeats']} repetitions; median (min-max)"),
    "engines": section_rows(lambda r: f"batch {r['batch']}, {r['epochs']} epochs per variant (the first a warm-up: "
                                      f"capture, compilation); images/s of the later ones, median; ratios to the "
                                      f"plain fp32 DataLoader loop with 8 and 2 workers"
                                      f"{'' if r['compiled'] else '; torch.compile left out (no time for it in the cap, or --dry)'}"),
    "packing": section_rows(lambda r: f"k trials in one process, {r['epochs']} epochs each (the first a warm-up); "
                                      f"a trial = {r['images_per_trial']:,} images; vs one per GPU = aggregate img/s "
                                      f"at k / at k = 1"),
    "imagenet": section_rows(lambda r: f"{r.get('images')} synthetic JPEGs, {r.get('image_size')} px crops, batch "
                                       f"{r.get('batch')}, {r.get('workers')} decoding workers, {r.get('steps')} timed "
                                       f"steps; pipeline / training {_num(r.get('pipeline_over_training'), 2)} (target "
                                       f">= 1.5), fed / synthetic {_num(r.get('fed_over_synthetic'), 2)} (target >= 0.9)"),
    "record": section_record,
}


