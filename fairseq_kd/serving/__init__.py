"""Serving students fast on CPU: one interface over three decoding engines.

    fairseq      fairseq's SequenceGenerator (the search of fairseq-generate); every model
    fast         this package's lean search (search.py) over the kd_lstm decoder step (lstm_step.py):
                 kd_lstm checkpoints, pruned or fairseq-kd-compress'd (--sparse / --int8)
    ctranslate2  CTranslate2 (ctranslate2_engine.py): fairseq transformers, exported by its own converter

engines.py loads a model for an engine (or picks the fastest one that supports it: `auto`) and gives
each the same call, `translate(sources, beam) -> hypotheses`, in the data's dictionary ids. The tools
(fairseq-kd-translate, fairseq-kd-speed --engine, fairseq-kd-distill --engine) go through it.
"""
