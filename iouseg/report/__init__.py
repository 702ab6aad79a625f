"""`iouseg report`: one self-contained HTML page that reviews a pipeline run's evaluation.

Modules, one job each: `command` (the subcommand's flags and entry point), `gallery` (segmenting the
eval records with the judged model), `charts` (matplotlib figures as inline SVG), `page` (the HTML).
Every metric shown is read from the Evaluator's TFMA output through `iouseg.run_summary`.
"""
