#!/usr/bin/env python3
"""Write PEFT adapters that exercise PEFT's config semantics, with PEFT's own outputs as the oracle.

Needs torch, transformers and peft (made with peft 0.21, transformers 5.17, torch 2.11 on CPU):

    python3 scripts/peft-fixtures.py OUT_DIR

OUT_DIR/tiny-llama-config/ gets:
- adapters/<name>/adapter_config.json + adapter_model.safetensors, exactly as
  PeftModel.save_pretrained writes them. The adapters (one LoraConfig each, see ADAPTERS) cover
  use_rslora, rank_pattern / alpha_pattern, a regex target_modules, layers_to_transform with and
  without layers_pattern, exclude_modules, scales other than 2, and F32 / BF16 / F16 tensors. A
  16-bit adapter's weights are rounded to its dtype before the forward pass, so PEFT computes with
  exactly the values in the file.
- oracle.safetensors: for every LoRA-wrapped module M, M.x (its input [T, in]), M.base (its base
  layer's output [T, out]) and M.y (PEFT's output [T, out]) of one mixed batch
  (forward(..., adapter_names=...)).
- manifest.json: token_adapter[t] ("__base__" = no adapter), and for every adapter its stored
  dtype and, per module PEFT wrapped, PEFT's own r and scaling (module.r[name],
  module.scaling[name]): config semantics as PEFT applied them.
- refused/<option>/adapter_config.json: configs PEFT writes for options multilora refuses
  (DoRA, lora_bias, aLoRA, ...), no weights; an option this PEFT cannot build is logged and left out.
- generate.log: what happened, including any adapter that PEFT would not build (then left out).
"""
import json
import math
import os
import sys
import traceback

import torch
import transformers
import peft
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

OUT = os.path.join(sys.argv[1] if len(sys.argv) > 1 else "out", "tiny-llama-config")
LOG = []


def log(*parts):
    line = " ".join(str(p) for p in parts)
    LOG.append(line)
    print(line, flush=True)


# Awkward sizes: hidden 104 (k/v 52 wide), intermediate 203 (down_proj has 203 inputs, not a multiple of 4).
MODEL = dict(vocab_size=96, hidden_size=104, intermediate_size=203, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, tie_word_embeddings=False)

ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# name -> (stored dtype, LoraConfig arguments). Scales: rs 16/sqrt(8) and 16/sqrt(4) (o_proj);
# pat 8/4 = 2, 8/8 = 1 (down), 8/2 = 4 (layer 1 q), 2/4 = 0.5 (up), 12/4 = 3 (v); rx 9/6 = 1.5;
# lt 3/5 = 0.6; l0 1/2 = 0.5.
ADAPTERS = {
    "rs": ("bf16", dict(r=8, lora_alpha=16, use_rslora=True, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                        rank_pattern={"o_proj": 4})),
    "pat": ("f16", dict(r=4, lora_alpha=8, target_modules=ALL,
                        rank_pattern={"down_proj": 8, "layers.1.self_attn.q_proj": 2},
                        alpha_pattern={"up_proj": 2, "v_proj": 12})),
    "rx": ("f32", dict(r=6, lora_alpha=9, target_modules=r"model\.layers\.\d+\.(self_attn\.(q|v)_proj|mlp\.gate_proj)")),
    "lt": ("bf16", dict(r=5, lora_alpha=3, target_modules=["q_proj", "o_proj", "up_proj", "down_proj"],
                        layers_to_transform=[1], layers_pattern="layers", exclude_modules=["q_proj"])),
    "l0": ("f16", dict(r=2, lora_alpha=1, target_modules=["k_proj", "gate_proj"], layers_to_transform=0)),
}
# one sequence per entry, SEQ_LEN tokens each
BATCH = ["rs", "pat", "__base__", "rx", "lt", "l0", "pat", "rx", "rs", "lt"]
SEQ_LEN = 3

TORCH_DTYPE = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}

# Options multilora refuses (UNSUPPORTED_FEATURE): LoraConfig arguments PEFT may write.
REFUSED = {
    "use_dora": dict(use_dora=True),
    "lora_bias": dict(lora_bias=True),
    "bias_all": dict(bias="all"),
    "bias_lora_only": dict(bias="lora_only"),
    "alora_invocation_tokens": dict(alora_invocation_tokens=[3, 5]),
    "use_qalora": dict(use_qalora=True),
    "trainable_token_indices": dict(trainable_token_indices=[1, 2]),
    "modules_to_save": dict(modules_to_save=["lm_head"]),
    "layer_replication": dict(layer_replication=[[0, 2], [1, 2]]),
    "use_bdlora": None,  # filled below if this PEFT has BD-LoRA
    "arrow_config": None,  # likewise
}


def lora_modules(model):
    from peft.tuners.lora.layer import LoraLayer
    return {name.removeprefix("base_model.model."): m for name, m in model.named_modules() if isinstance(m, LoraLayer)}


def set_weights(model, name, dtype, gen):
    """Random LoRA weights for adapter `name`, rounded to `dtype` (kept as float32 for the forward)."""
    for path, m in lora_modules(model).items():
        if name not in m.lora_A:
            continue
        a, b = m.lora_A[name].weight, m.lora_B[name].weight
        with torch.no_grad():
            va = torch.randn(a.shape, generator=gen) / math.sqrt(a.shape[1])
            vb = torch.randn(b.shape, generator=gen) * 0.3
            a.copy_(va.to(TORCH_DTYPE[dtype]).to(torch.float32))
            b.copy_(vb.to(TORCH_DTYPE[dtype]).to(torch.float32))


def main():
    os.makedirs(OUT, exist_ok=True)
    log("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    base = LlamaForCausalLM(LlamaConfig(**MODEL)).eval()

    model = None
    made = {}
    for name, (dtype, args) in ADAPTERS.items():
        try:
            config = LoraConfig(init_lora_weights=False, lora_dropout=0.0, **args)
            if model is None:
                model = get_peft_model(base, config, adapter_name=name)
            else:
                model.add_adapter(name, config)
            set_weights(model, name, dtype, gen)
            made[name] = dtype
            log("adapter", name, dtype, "ok")
        except Exception:
            log("adapter", name, "FAILED, left out:\n" + traceback.format_exc())
    model.eval()

    batch = [a if a == "__base__" or a in made else "__base__" for a in BATCH]
    input_ids = torch.randint(0, MODEL["vocab_size"], (len(batch), SEQ_LEN), generator=gen)
    captured = {}
    hooks = []
    modules = lora_modules(model)
    for path, m in modules.items():
        def hook(mod, args, output, path=path):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).clone()
            with torch.no_grad():
                b = mod.base_layer(x)
            captured[path] = (x, b.detach().clone(), output.detach().reshape(-1, output.shape[-1]).clone())
        hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        model(input_ids=input_ids, adapter_names=batch)
    for h in hooks:
        h.remove()
    token_adapter = [a for a in batch for _ in range(SEQ_LEN)]

    # Check the recorded outputs against y = base + scaling * (x A^T) B^T per token, and collect
    # PEFT's own r and scaling per module.
    manifest_adapters = {name: {"dtype": dtype, "config": {k: v for k, v in ADAPTERS[name][1].items()}, "modules": {}}
                         for name, dtype in made.items()}
    worst = 0.0
    tensors = {}
    for path in sorted(captured):
        x, b, y = captured[path]
        m = modules[path]
        expect = b.clone().double()
        for t, a in enumerate(token_adapter):
            if a in m.lora_A:
                A = m.lora_A[a].weight.double()
                B = m.lora_B[a].weight.double()
                expect[t] += m.scaling[a] * (B @ (A @ x[t].double()))
                manifest_adapters[a]["modules"][path] = {"r": int(m.r[a]), "scaling": float(m.scaling[a]),
                                                          "lora_alpha": float(m.lora_alpha[a])}
        for a in made:
            if a in m.lora_A and path not in manifest_adapters[a]["modules"]:
                manifest_adapters[a]["modules"][path] = {"r": int(m.r[a]), "scaling": float(m.scaling[a]),
                                                          "lora_alpha": float(m.lora_alpha[a])}
        scale = max(1e-30, (y.double() - b.double()).abs().max().item())
        err = (y.double() - expect).abs().max().item() / scale
        worst = max(worst, err)
        tensors[f"{path}.x"] = x.float().contiguous()
        tensors[f"{path}.base"] = b.float().contiguous()
        tensors[f"{path}.y"] = y.float().contiguous()
    log("self-check: largest relative error of PEFT's delta against base + scaling * B A x:", worst)
    save_file(tensors, os.path.join(OUT, "oracle.safetensors"))

    # Save in each adapter's dtype (PEFT writes the parameters as they are).
    for path, m in modules.items():
        for a, dtype in made.items():
            if a in m.lora_A:
                m.lora_A[a].to(TORCH_DTYPE[dtype])
                m.lora_B[a].to(TORCH_DTYPE[dtype])
    tmp = os.path.join(OUT, "adapters")
    model.save_pretrained(tmp)
    for a in made:
        log("saved", a, sorted(os.listdir(os.path.join(tmp, a))))

    manifest = {
        "generator": f"scripts/peft-fixtures.py: peft {peft.__version__}, transformers {transformers.__version__}, torch {torch.__version__}",
        "model": MODEL,
        "seq_len": SEQ_LEN,
        "sequences": batch,
        "token_adapter": token_adapter,
        "modules": sorted(captured),
        "self_check_rel_error": worst,
        "adapters": manifest_adapters,
    }
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, default=str)

    refused(model)
    with open(os.path.join(OUT, "generate.log"), "w") as f:
        f.write("\n".join(LOG) + "\n")


def refused(model):
    """Configs of options multilora refuses, as PEFT writes them (no weights)."""
    try:
        from peft.tuners.lora.config import BdLoraConfig  # noqa: F401  (not in every PEFT)
        REFUSED["use_bdlora"] = dict(use_bdlora=BdLoraConfig())
    except Exception as e:
        log("refused use_bdlora: no BdLoraConfig here:", repr(e))
    try:
        from peft import ArrowConfig
        REFUSED["arrow_config"] = dict(arrow_config=ArrowConfig(top_k=1, router_temperature=1.0))
    except Exception as e:
        log("refused arrow_config: no ArrowConfig here:", repr(e))
    for opt, args in REFUSED.items():
        if args is None:
            continue
        try:
            config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], init_lora_weights=False, **args)
            d = os.path.join(OUT, "refused", opt)
            config.save_pretrained(d)
            log("refused", opt, "written")
        except Exception as e:
            log("refused", opt, "not written:", repr(e).splitlines()[0][:300])


if __name__ == "__main__":
    try:
        main()
    except Exception:
        log("FAILED:\n" + traceback.format_exc())
        os.makedirs(OUT, exist_ok=True)
        with open(os.path.join(OUT, "generate.log"), "w") as f:
            f.write("\n".join(LOG) + "\n")
        sys.exit(1)
