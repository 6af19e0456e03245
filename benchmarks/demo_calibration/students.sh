set -e
cd /work/exp
export ROOT_DIR=/work/wt DATA_BIN=/work/exp/demo1/seqkd/bin EVAL_BIN=/work/exp/demo1/bin EVAL_REF=/work/exp/demo1/raw/valid.ref.de PYTHONPATH=/work/wt
T="--share-all-embeddings --optimizer adam --adam-betas (0.9,0.98) --lr-scheduler inverse_sqrt --max-tokens 2048"
./trial3.sh S1_e6d1_64_lr5_w100 1.5 kd_transformer_e6d1_64 $T --lr 0.005 --warmup-updates 100
./trial3.sh S2_e6d1_128_w100 1.5 kd_transformer_e6d1_128 $T --lr 0.003 --warmup-updates 100
