"""Names every absolute path in SavedModels' metadata portably, as exports do since runs
are named portably: relative to the project when inside it, else a run by its name and a
SavedModel by ``<kind>/<name>/<version>`` (``rundirs.portable_record``). For SavedModels
exported before that, whose metadata name directories of the machine that trained them.

Usage (from the project root): python scripts/portable_metadata.py [SAVED_MODEL ...]
(default: every SavedModel under saved_models/). Each model is re-saved with only its
metadata changed (the variable and ``assets/amn_tf.json``), after checking that its other
variables and its serving outputs are unchanged; its stored test play
(``assets.extra/test_play.json``) has the paths in its command rewritten the same way.
A model with nothing to rewrite is left as it is, byte for byte.
"""

import glob
import os
import sys

from amn_tf import export, rundirs


def _test_play(path: str) -> bool:
    play = export.read_test_play(path)
    if play is None or rundirs.portable_record(play) == play:
        return False
    play = rundirs.portable_record(play)
    play.pop("format")
    export.write_test_play(path, play)
    return True


def main(paths: list) -> int:
    paths = paths or sorted(glob.glob(os.path.join("saved_models", "*", "*", "*", "saved_model.pb")))
    for path in [os.path.dirname(p) if p.endswith("saved_model.pb") else p for p in paths]:
        try:
            metadata = export.rewrite_metadata(path, rundirs.portable_record)
            play = _test_play(path)
        except (export.SavedModelError, export.ExportError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        changed = [what for what, done in (("metadata", metadata), ("test play", play)) if done]
        print(f"{path}: {' and '.join(changed) + ' rewritten' if changed else 'already portable'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
