"""Does TorchScript help the fast decoder? The float kd_lstm step (the 1x128 student's shapes, 6,008 words, 16 source
tokens, random weights), eager against torch.jit.script, per step at batch 1 and 64 on 2 threads.

    .venv/bin/python benchmarks/torchscript_step.py
"""
import time, torch, torch.nn.functional as F
from typing import List, Tuple
torch.set_num_threads(2)
H, V, S = 128, 6008, 16
def step(prev: torch.Tensor, feed: torch.Tensor, h: torch.Tensor, c: torch.Tensor, emb: torch.Tensor,
         w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor, wa: torch.Tensor,
         wc: torch.Tensor, wo: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor):
    x = torch.cat((F.embedding(prev, emb), feed), dim=-1)
    h, c = torch.lstm_cell(x, (h, c), w_ih, w_hh, b_ih, b_hh)
    q = h.unsqueeze(1)
    scores = torch.baddbmm(mask, F.linear(q, wa), keys)
    context = torch.bmm(torch.softmax(scores, dim=-1), values)
    ht = torch.tanh(F.linear(torch.cat((context, q), dim=-1), wc)).squeeze(1)
    logits = F.linear(ht, wo)
    return logits.max(dim=1)[1], ht, h, c
scripted = torch.jit.script(step)
res = {}
for B in (1, 64):
    args = [torch.randint(4, V, (B,)), torch.randn(B, H), torch.randn(B, H), torch.randn(B, H), torch.randn(V, H),
            torch.randn(4 * H, 2 * H), torch.randn(4 * H, H), torch.randn(4 * H), torch.randn(4 * H), torch.randn(H, H),
            torch.randn(H, 2 * H), torch.randn(V, H), torch.randn(B, H, S), torch.randn(B, S, H), torch.zeros(B, 1, S)]
    for name, f in (("eager", step), ("torchscript", scripted)):
        with torch.no_grad():
            for _ in range(50): f(*args)
            n = 2000 if B == 1 else 300
            t = time.perf_counter()
            for _ in range(n): f(*args)
            res[(B, name)] = (time.perf_counter() - t) / n * 1e6
    print(f"batch {B}: eager {res[(B, 'eager')]:.0f} us/step, torchscript {res[(B, 'torchscript')]:.0f} us/step")
