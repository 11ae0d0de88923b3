#!/usr/bin/env python3
"""Oracle for one LoRA layer: PEFT's LoRA Linear on a dense fp32 base and on a bitsandbytes NF4 base:
forward output and gradients of x, lora_A and lora_B; and the
kaiming-uniform init PEFT draws after torch.manual_seed. Raw little-endian files + reference/lora/cases.json."""
import argparse
import json
import math
import os
from pathlib import Path

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
import torch
import bitsandbytes.functional as F
from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
from bitsandbytes.backends.utils import _get_4bit_code
from peft import LoraConfig, get_peft_model


class Block(torch.nn.Module):
    def __init__(self, proj):
        super().__init__()
        self.proj = proj

    def forward(self, x):
        return self.proj(x)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", required=True)
    out = Path(parser.parse_args().fixtures) / "reference" / "lora"
    out.mkdir(parents=True, exist_ok=True)
    cases = []

    def save(case, name, tensor):
        tensor.detach().contiguous().float().numpy().tofile(out / f"{case}.{name}.bin")

    for index, (base_kind, in_f, out_f, r, alpha, rslora, bias) in enumerate([
            ("dense", 67, 45, 8, 16, False, True), ("dense", 64, 96, 4, 32, True, False),
            ("nf4", 128, 72, 8, 16, False, False), ("nf4", 64, 33, 16, 16, False, True)]):
        case = f"c{index}"
        torch.manual_seed(100 + index)
        weight = torch.randn(out_f, in_f) * 0.1
        bias_value = torch.randn(out_f) * 0.1 if bias else None
        if base_kind == "dense":
            proj = torch.nn.Linear(in_f, out_f, bias=bias)
            proj.weight.data.copy_(weight)
        else:
            # The NF4 base as bitsandbytes defines it: quantize_4bit, then its generic dequantization (the
            # semantics of its CUDA kernels), then a dense fp32 matmul. bitsandbytes' own CPU 4-bit matmul is
            # not used: it lands ~1% away from its own dequantize-then-matmul (seen with 0.50.2).
            packed, state = F.quantize_4bit(weight, blocksize=64, quant_type="nf4")
            dequantized = _dequantize_4bit_compute(packed.reshape(-1), state.absmax,
                                                   _get_4bit_code("nf4", packed.device), 64, weight.shape,
                                                   torch.float32)
            proj = torch.nn.Linear(in_f, out_f, bias=bias)
            proj.weight.data.copy_(dequantized)
        if bias:
            proj.bias.data.copy_(bias_value)
        model = get_peft_model(Block(proj), LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0,
                                                       target_modules=["proj"], use_rslora=rslora))
        layer = model.base_model.model.proj
        with torch.no_grad():  # B starts at zero; give it values so the update is under test
            layer.lora_B["default"].weight.normal_(0, 0.05)
        x = torch.randn(3, 5, in_f, requires_grad=True)
        y = model(x)
        upstream = torch.randn_like(y)
        (y * upstream).sum().backward()
        for name, tensor in {"weight": weight, "x": x, "y": y, "upstream": upstream, "dx": x.grad,
                             "lora_A": layer.lora_A["default"].weight, "lora_B": layer.lora_B["default"].weight,
                             "dA": layer.lora_A["default"].weight.grad,
                             "dB": layer.lora_B["default"].weight.grad}.items():
            save(case, name, tensor)
        if bias:
            save(case, "bias", bias_value)
        cases.append({"case": case, "base": base_kind, "in": in_f, "out": out_f, "r": r, "alpha": alpha,
                      "rslora": rslora, "bias": bias})

    # Mixed precision as AutoTrain runs it: a bf16 / fp16 base, fp32 adapters (PEFT's autocast_adapter_dtype),
    # the step under torch.autocast in the base's dtype.
    autocast_cases = []
    for index, (dtype_name, in_f, out_f, r, alpha) in enumerate([("bf16", 96, 40, 8, 16), ("fp16", 64, 72, 4, 32)]):
        case = f"autocast{index}"
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
        torch.manual_seed(200 + index)
        weight = (torch.randn(out_f, in_f) * 0.1).to(dtype)
        proj = torch.nn.Linear(in_f, out_f, bias=False).to(dtype)
        proj.weight.data.copy_(weight)
        model = get_peft_model(Block(proj), LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0,
                                                       target_modules=["proj"]))
        layer = model.base_model.model.proj
        assert layer.lora_A["default"].weight.dtype == torch.float32
        with torch.no_grad():
            layer.lora_B["default"].weight.normal_(0, 0.05)
        x = torch.randn(3, 5, in_f).to(dtype).requires_grad_(True)
        with torch.autocast("cpu", dtype=dtype):
            y = model(x)
        assert y.dtype == dtype
        upstream = torch.randn(y.shape).to(dtype)
        (y * upstream).float().sum().backward()
        for name, tensor in {"weight": weight, "x": x, "y": y, "upstream": upstream, "dx": x.grad,
                             "lora_A": layer.lora_A["default"].weight, "lora_B": layer.lora_B["default"].weight,
                             "dA": layer.lora_A["default"].weight.grad,
                             "dB": layer.lora_B["default"].weight.grad}.items():
            save(case, name, tensor)
        autocast_cases.append({"case": case, "dtype": dtype_name, "in": in_f, "out": out_f, "r": r, "alpha": alpha})
    (out / "autocast.json").write_text(json.dumps(autocast_cases, indent=1))

    # Init: after torch.manual_seed(s), PEFT draws A with kaiming_uniform_(a=sqrt(5)) on an (r, in) tensor.
    torch.manual_seed(42)
    a = torch.empty(8, 67)
    torch.nn.init.kaiming_uniform_(a, a=math.sqrt(5))
    save("init", "lora_A", a)
    (out / "cases.json").write_text(json.dumps(cases, indent=1))


if __name__ == "__main__":
    main()
