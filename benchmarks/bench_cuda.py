"""CUDA checks and figures for a GPU machine: the WorldStereo 2.0 backend (tiny through the loader, full size with
random weights, with and without offload) and gsplat (agreement test, training speed).

    python -m benchmarks.bench_cuda --out /tmp/cuda_check            # on a CUDA machine
    python -m benchmarks.bench_cuda --smoke --device cpu --only full  # the same code at toy size, anywhere

Nothing here is downloaded: the tiny models are the tests' own (tests/test_worldstereo_model.py); the full-size
ones are diffusers' / transformers' classes at the published Wan2.1-I2V-14B-480P, UMT5-XXL and CLIP ViT-H/14
sizes with random weights, so the figures are speed and memory, never image quality. The release's ControlNet
branch size comes with its config.json, which is not public code; FULL_BRANCH below is an assumption (the 14B
main transformer dominates the cost). Each section is timed and guarded: one failing leaves the others to run,
and results.json under --out holds every figure and error.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tiny models are the tests' own
VARIANT = "worldstereo-memory-dmd"

# Wan2.1-I2V-14B-480P-Diffusers transformer/config.json (the published sizes).
WAN_14B = dict(patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=36, out_channels=16,
               text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True,
               qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=1280, added_kv_proj_dim=5120, rope_max_seq_len=1024)
UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                feed_forward_proj="gated-gelu", relative_attention_num_buckets=32, relative_attention_max_distance=128)
CLIP_VIT_H = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                  image_size=224, patch_size=14, hidden_act="gelu", projection_dim=1024)
# Assumed (see the module docstring): a Wan-1.3B-wide branch over the first 20 of the 40 main blocks.
FULL_BRANCH = dict(dim=1536, num_heads=12, ffn_dim=8960, num_layers=20, time_embed_dim=5120, conv_out_dim=1536,
                   add_channels=7, mid_channels=64, mask_downsample=1, ref_embedding=True, main_camera_embedding=True,
                   camera_embedding_dim=7, update_ref=False)
FULL_SIZE_HW = (480, 768)  # the release's landscape 480P bucket

SMOKE_WAN = dict(WAN_14B, num_attention_heads=2, attention_head_dim=16, ffn_dim=64, num_layers=2, text_dim=32,
                 freq_dim=16, image_dim=16, added_kv_proj_dim=32, rope_max_seq_len=64)
SMOKE_UMT5 = dict(UMT5_XXL, vocab_size=8, d_model=32, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
SMOKE_CLIP = dict(CLIP_VIT_H, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                  image_size=32, patch_size=8, projection_dim=16)
SMOKE_BRANCH = dict(FULL_BRANCH, dim=16, num_heads=2, ffn_dim=32, num_layers=2, time_embed_dim=32, conv_out_dim=16,
                    mid_channels=16)
SMOKE_HW = (64, 96)


# --------------------------------------------------------------------------- helpers


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peaks_gib(device: torch.device) -> dict:
    """Peak memory allocated by tensors and reserved by torch's caching allocator (GiB; the card also
    holds the CUDA context beside these)."""
    if device.type != "cuda":
        return {}
    return {"peak_allocated_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2),
            "peak_reserved_gib": round(torch.cuda.max_memory_reserved(device) / 2**30, 2)}


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


class CallTimer:
    """Wall time of each forward of a module (synchronised) and whether its output was finite, through hooks."""

    def __init__(self, module: torch.nn.Module, device: torch.device):
        self.times: list[float] = []
        self.finite: list[bool] = []
        self._t0 = 0.0
        self._dev = device
        self._handles = [module.register_forward_pre_hook(self._pre), module.register_forward_hook(self._post)]

    def _pre(self, *_):
        sync(self._dev)
        self._t0 = time.perf_counter()

    def _post(self, _module, _inputs, output):
        sync(self._dev)
        self.times.append(round(time.perf_counter() - self._t0, 3))
        self.finite.append(bool(torch.isfinite(output).all()))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


# --------------------------------------------------------------------------- tiny, through the loader


def write_tiny_release(root: Path) -> tuple[Path, Path]:
    """The tests' tiny memory-dmd release (branch + base + UMT5 + CLIP) in the real folder layout."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    import tests.test_worldstereo_model as T

    base = root / "base"
    torch.manual_seed(0)
    WanTransformer3DModel(**T.BASE_KW).save_pretrained(base / "transformer")
    AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                     temperal_downsample=[False, True, True]).save_pretrained(base / "vae")
    tokenizer, text_encoder = T.tiny_text_encoder()
    processor, image_encoder = T.tiny_image_encoder()
    tokenizer.save_pretrained(base / "tokenizer")
    text_encoder.save_pretrained(base / "text_encoder")
    processor.save_pretrained(base / "image_processor")
    image_encoder.save_pretrained(base / "image_encoder")
    branch = T.release_config(VARIANT)["controlnet_cfg"]
    layout = T.base_layout() | T.release_branch_layout(branch, T.INNER, 36, VARIANT)
    T.write_variant(root / "weights", VARIANT, T.random_checkpoint(layout),
                    cfg=T.release_config(VARIANT) | {"scale_map": [[32, 48]]})
    return root / "weights", base


@contextmanager
def no_tf32() -> Iterator[None]:
    """float32 matmuls and convolutions in full precision (cuDNN defaults to TF32 convolutions)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def tiny_section(device: torch.device) -> dict:
    """Loader → models on `device` (bf16 on CUDA) vs on CPU (float32): encoders, latents, frames, offload."""
    import tests.test_worldstereo_model as T
    from worldstereo.generate.worldstereo.loader import load_worldstereo
    from worldstereo.generate.worldstereo.sampling import encode_image, encode_prompt, sample_keyframes

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        weights, base = write_tiny_release(Path(tmp))
        cpu = load_worldstereo(weights, base, VARIANT, device="cpu")
        t0 = time.perf_counter()
        dev = load_worldstereo(weights, base, VARIANT, device=str(device))
        out["load_s"] = round(time.perf_counter() - t0, 2)
        out["dtype"] = str(dev.transformer.patch_embedding.weight.dtype)
        out["report"] = dev.report.line()
        rgb = (np.random.default_rng(0).random((32, 48, 3)) * 255).astype(np.uint8)
        out["prompt_rel_err"] = rel_err(encode_prompt(dev.tokenizer, dev.text_encoder, "a sunlit kitchen", dev.device),
                                        encode_prompt(cpu.tokenizer, cpu.text_encoder, "a sunlit kitchen", cpu.device))
        out["image_rel_err"] = rel_err(encode_image(dev.image_processor, dev.image_encoder, rgb, dev.device),
                                       encode_image(cpu.image_processor, cpu.image_encoder, rgb, cpu.device))
        cond = T.tiny_conditions(n_refs=2)
        ref = sample_keyframes(cpu.transformer, cpu.vae, cond, cpu.cfg, device="cpu", output="latents")
        sync(device)
        t0 = time.perf_counter()
        lat = sample_keyframes(dev.transformer, dev.vae, cond, dev.cfg, device=device, output="latents")
        sync(device)
        out["sample_s"] = round(time.perf_counter() - t0, 3)
        out["latents_rel_err_bf16"] = rel_err(lat, ref)  # bf16 weights and arithmetic
        with no_tf32():
            out |= fp32_and_offload(cpu, dev.vae, cond, ref, device)
    return out


def fp32_and_offload(cpu, vae, cond, ref: torch.Tensor, device: torch.device) -> dict:
    """The CPU's float32 transformer copied to `device` unrounded (TF32 off): the device's own float32
    arithmetic against the CPU's; then the same models offloaded, against themselves resident."""
    from worldstereo.generate.worldstereo.sampling import sample_keyframes

    out: dict = {}
    transformer = copy.deepcopy(cpu.transformer).to(device)
    lat32 = sample_keyframes(transformer, vae, cond, cpu.cfg, device=device, output="latents")
    out["latents_rel_err_fp32"] = rel_err(lat32, ref)
    frames_cpu = sample_keyframes(cpu.transformer, cpu.vae, cond, cpu.cfg, device="cpu")
    frames = sample_keyframes(transformer, vae, cond, cpu.cfg, device=device)
    out["frames_shape"] = list(frames.shape)
    out["frames_fp32_max_abs_diff_uint8"] = int(np.abs(frames.astype(int) - frames_cpu).max())
    for m in (transformer, vae):
        m.to("cpu")
    lat_off = sample_keyframes(transformer, vae, cond, cpu.cfg, device=device, offload=True, output="latents")
    out["offload_vs_resident_rel_err"] = rel_err(lat_off, lat32)
    out["offload_models_back_on_cpu"] = all(next(m.parameters()).device.type == "cpu" for m in (transformer, vae))
    return out


# --------------------------------------------------------------------------- full size, random weights


def keep_fp32(model: torch.nn.Module) -> None:
    """Put the modules a diffusers model keeps in float32 (`_keep_in_fp32_modules`) back to float32."""
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or [])
    for name, p in list(model.named_parameters()) + list(model.named_buffers()):
        if keep & set(name.split(".")) and p.is_floating_point():
            p.data = p.data.float()


def build_full_models(device: torch.device, smoke: bool):
    """Full-size (or smoke-size) transformer (bf16 on CUDA) + branch, Wan VAE, UMT5 and CLIP, random weights."""
    from diffusers import AutoencoderKLWan
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    import tests.test_worldstereo_model as T
    from worldstereo.generate.worldstereo.config import BranchConfig, ReleaseConfig
    from worldstereo.generate.worldstereo.loader import LoadReport, WorldStereoModels, pick_dtype
    from worldstereo.generate.worldstereo.model import WorldStereoTransformer

    wan, branch, umt5, clip = ((SMOKE_WAN, SMOKE_BRANCH, SMOKE_UMT5, SMOKE_CLIP) if smoke else
                               (WAN_14B, FULL_BRANCH, UMT5_XXL, CLIP_VIT_H))
    dtype = pick_dtype(device)
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    with torch.device(device):
        torch.set_default_dtype(dtype)  # built in place: a 14B float32 copy would not be needed
        try:
            transformer = WorldStereoTransformer(**wan).to(dtype)
            keep_fp32(transformer)  # as from_pretrained(torch_dtype=bf16) leaves the base model
            transformer.attach_branch(BranchConfig(**branch), VARIANT)  # in the base model's dtype, as the loader
        finally:
            torch.set_default_dtype(default)
        transformer.eval().requires_grad_(False)
        vae = (AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1) if smoke
               else AutoencoderKLWan()).eval().requires_grad_(False)
        text_encoder = UMT5EncoderModel(UMT5Config(**umt5)).eval().requires_grad_(False)
        image_encoder = CLIPVisionModel(CLIPVisionConfig(**clip)).eval().requires_grad_(False)
    text_encoder.encoder.embed_tokens = text_encoder.shared
    tokenizer, _ = T.tiny_text_encoder()  # token ids 0..5: valid rows of any UMT5 vocabulary
    side = clip["image_size"]
    processor = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                                   do_rescale=False)
    cfg = ReleaseConfig(variant=VARIANT, branch=BranchConfig(**branch), gen_shift=5.0)
    models = WorldStereoModels(cfg, transformer, vae, LoadReport(0, 0), device, False, Path("."),
                               text_encoder=text_encoder, tokenizer=tokenizer, image_encoder=image_encoder,
                               image_processor=processor)
    counts = {name: sum(p.numel() for p in m.parameters())
              for name, m in (("transformer", transformer), ("branch", transformer.controlnet), ("vae", vae),
                              ("text_encoder", text_encoder), ("image_encoder", image_encoder))}
    return models, counts


def full_conditions(hw: tuple[int, int], image_ctx: torch.Tensor, prompt: torch.Tensor, n_refs: int = 2):
    from worldstereo.generate.worldstereo.conditioning import reference_layout
    from worldstereo.generate.worldstereo.sampling import build_conditions

    h, w = hw
    g = torch.Generator().manual_seed(0)
    n = 21
    K = torch.tensor([[0.8 * w, 0, w / 2], [0, 0.8 * w, h / 2], [0, 0, 1]], dtype=torch.float64).expand(n, 3, 3)
    w2c = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    w2c[:, 0, 3] = -torch.linspace(0, 1, n, dtype=torch.float64)
    layout = reference_layout([0] * 6 + [1] * 14)
    return build_conditions(torch.rand(3, h, w, generator=g) * 2 - 1, torch.rand(n, 3, h, w, generator=g) * 2 - 1,
                            torch.rand(n, h, w, generator=g) > 0.7, K, w2c, prompt.cpu().float(),
                            image_ctx.cpu().float(), reference=torch.rand(n_refs, 3, h, w, generator=g) * 2 - 1,
                            ref_index=layout.ref_index, w2c_ref=w2c[[1, 7]])


def full_section(device: torch.device, smoke: bool) -> dict:
    """One memory-dmd trajectory (21 keyframes, 2 references) at the 480P bucket: time per part and peak memory,
    all models resident, then again with model offload (each model on the GPU only while it runs)."""
    from worldstereo.generate.worldstereo.sampling import encode_image, encode_prompt, on_device, sample_keyframes

    out: dict = {}
    reset_peak(device)
    t0 = time.perf_counter()
    models, counts = build_full_models(device, smoke)
    sync(device)
    out["build_s"] = round(time.perf_counter() - t0, 1)
    out["parameters"] = counts
    parts = (models.transformer, models.vae, models.text_encoder, models.image_encoder)
    out["weights_gib"] = round(sum(p.numel() * p.element_size() for m in parts for p in m.parameters()) / 2**30, 2)
    hw = SMOKE_HW if smoke else FULL_SIZE_HW
    rgb = (np.random.default_rng(0).random((hw[0], hw[1], 3)) * 255).astype(np.uint8)

    def run(offload: bool) -> dict:
        m = models
        r: dict = {}
        reset_peak(device)
        sync(device)
        t = time.perf_counter()
        with on_device(m.text_encoder, device, offload):
            prompt = encode_prompt(m.tokenizer, m.text_encoder, "a sunlit kitchen", device)
        sync(device)
        r["prompt_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        with on_device(m.image_encoder, device, offload):
            image_ctx = encode_image(m.image_processor, m.image_encoder, rgb, device)
        sync(device)
        r["image_s"] = round(time.perf_counter() - t, 2)
        cond = full_conditions(hw, image_ctx, prompt)
        timer = CallTimer(m.transformer, device)
        t = time.perf_counter()
        frames = sample_keyframes(m.transformer, m.vae, cond, m.cfg, device=device, offload=offload)
        sync(device)
        timer.remove()
        r["trajectory_s"] = round(time.perf_counter() - t, 1)
        r["transformer_calls_s"] = timer.times
        r["frames"] = list(frames.shape)
        r["transformer_outputs_finite"] = all(timer.finite)
        r["frames_varied"] = bool(frames.std() > 0)
        r |= peaks_gib(device)
        return r

    out["resident"] = run(offload=False)
    for m in parts:
        m.to("cpu")
    out["offload"] = run(offload=True)  # resets the peak itself
    return out


# --------------------------------------------------------------------------- gsplat


def start_gsplat_build(log: Path, device: torch.device) -> subprocess.Popen:
    """JIT-build gsplat's CUDA extension in the background (for this card only) while the other sections run."""
    arch = "{}.{}".format(*torch.cuda.get_device_capability(device))
    env = dict(os.environ, MAX_JOBS=os.environ.get("MAX_JOBS", "12"),
               TORCH_CUDA_ARCH_LIST=os.environ.get("TORCH_CUDA_ARCH_LIST", arch))
    code = ("import time; t = time.time(); from gsplat.cuda._backend import _C; "
            "print('built', _C is not None, time.time() - t)")
    return subprocess.Popen([sys.executable, "-c", code], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def last_json(text: str) -> dict | str:
    """The JSON object a benchmark printed last (its raw tail when there is none)."""
    try:
        return json.loads(text[text.index("{"):])
    except ValueError:
        return text[-800:]


def gsplat_section(build: subprocess.Popen | None, log: Path, deadline: float) -> dict:
    out: dict = {}
    if build is not None:
        try:
            build.wait(timeout=max(1.0, deadline - time.time() - 150))
        except subprocess.TimeoutExpired:
            out["build"] = "still building at the deadline"
            return out
        out["build_log_tail"] = log.read_text()[-600:]
        if build.returncode != 0:
            return out
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_rasterizer.py",
                        "-k", "gsplat"], cwd=REPO, capture_output=True, text=True, timeout=300)
    out["pytest_rc"], out["pytest_tail"] = r.returncode, (r.stdout + r.stderr)[-800:]
    runs = [("3dgs", "gsplat", 3000), ("2dgs", "gsplat", 3000), ("3dgs", "torch", 300)]
    for renderer, backend, iters in runs:
        left = deadline - time.time()
        if left < 40:
            out[f"train_{renderer}_{backend}"] = "skipped: deadline"
            continue
        synthetic = Path(tempfile.gettempdir()) / f"gs_synth_{renderer}_{backend}"
        cmd = [sys.executable, "-m", "benchmarks.bench_train_gs", "--scene", "/nonexistent", "--synthetic-dir",
               str(synthetic), "--renderer", renderer, "--backend", backend, "--iterations", str(iters),
               "--threads", "8", "--no-render-trajectories"]
        try:
            r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=left - 10)
        except subprocess.TimeoutExpired:
            out[f"train_{renderer}_{backend}"] = "timed out"
            continue
        out[f"train_{renderer}_{backend}"] = last_json(r.stdout) if r.returncode == 0 else (r.stdout + r.stderr)[-800:]
    return out


# --------------------------------------------------------------------------- main


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def provenance() -> dict:
    """Versions, driver and commit, so a results.json says what produced it."""
    info = {"torch": torch.__version__, "cuda": torch.version.cuda,
            "driver": _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]),
            "commit": _run(["git", "rev-parse", "HEAD"]), "dirty": bool(_run(["git", "status", "--porcelain"]))}
    for pkg in ("diffusers", "transformers", "gsplat"):
        try:
            info[pkg] = metadata.version(pkg)  # not imported: importing gsplat starts its CUDA build
        except metadata.PackageNotFoundError:
            info[pkg] = None
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/cuda_check"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--only", default="tiny,full,gsplat", help="comma-separated sections")
    ap.add_argument("--smoke", action="store_true", help="toy sizes for the full-size section (a CPU dry run)")
    ap.add_argument("--budget-s", type=float, default=480, help="sections still running past this are cut short")
    a = ap.parse_args()
    sections = a.only.split(",")
    unknown = sorted(set(sections) - {"tiny", "full", "gsplat"})
    if unknown:
        ap.error(f"--only: unknown section(s) {', '.join(unknown)} (tiny, full, gsplat)")
    deadline = time.time() + a.budget_s
    a.out.mkdir(parents=True, exist_ok=True)
    device = torch.device(a.device)
    results: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                     "smoke": a.smoke, "software": provenance()}
    build = None
    if "gsplat" in sections and device.type == "cuda":
        build = start_gsplat_build(a.out / "gsplat_build.log", device)

    def save() -> None:
        (a.out / "results.json").write_text(json.dumps(results, indent=1))

    for name, fn in (("tiny", lambda: tiny_section(device)), ("full", lambda: full_section(device, a.smoke)),
                     ("gsplat", lambda: gsplat_section(build, a.out / "gsplat_build.log", deadline))):
        if name not in sections:
            continue
        t0 = time.perf_counter()
        try:
            results[name] = fn()
        except Exception:
            results[name] = {"error": traceback.format_exc()[-2000:]}
        results[name]["section_s"] = round(time.perf_counter() - t0, 1)
        print(name, json.dumps(results[name])[:1500], flush=True)
        save()
    if build is not None and build.poll() is None:
        build.kill()
    save()


if __name__ == "__main__":
    main()
