"""WorldStereo 2.0 on diffusers' Wan classes: key layout, loading, bad input, the tiny CPU denoising path.

Tiny random models are built here with the release's module structure shrunk (2 heads, 2 blocks,
widths 16–24); nothing is downloaded. The expected key layout is written out by hand from the
release's module definitions (`release_branch_layout`), independently of our model code.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="the worldstereo backend needs the `diffusion` extra")
from diffusers import AutoencoderKLWan, WanTransformer3DModel  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from worldstereo.errors import InputError  # noqa: E402
from worldstereo.generate.worldstereo import conditioning as C  # noqa: E402
from worldstereo.generate.worldstereo.config import BranchConfig, parse_release_config  # noqa: E402
from worldstereo.generate.worldstereo.loader import load_checkpoint_into, load_worldstereo  # noqa: E402
from worldstereo.generate.worldstereo.model import (MaskCameraEmbedding, WorldStereoTransformer,  # noqa: E402
                                                    rope_at)
from worldstereo.generate.worldstereo.sampling import (build_conditions, dmd_timesteps,  # noqa: E402
                                                       sample_keyframes)

HEADS, HEAD_DIM = 2, 12
INNER = HEADS * HEAD_DIM
BASE_KW = dict(patch_size=(1, 2, 2), num_attention_heads=HEADS, attention_head_dim=HEAD_DIM, in_channels=36,
               out_channels=16, text_dim=32, freq_dim=16, ffn_dim=32, num_layers=2, image_dim=8,
               added_kv_proj_dim=INNER, rope_max_seq_len=64)
BRANCH = dict(dim=16, num_heads=2, ffn_dim=32, num_layers=2, time_embed_dim=INNER, conv_out_dim=INNER,
              add_channels=7, mid_channels=16, mask_downsample=1)
VARIANT_CFG = {
    "worldstereo-camera": {},
    "worldstereo-memory": {"update_ref": True, "main_camera_embedding": True, "camera_embedding_dim": 7,
                           "ref_embedding": True},
    "worldstereo-memory-dmd": {"update_ref": False, "main_camera_embedding": True, "camera_embedding_dim": 7,
                               "ref_embedding": True},
}
DMD_KEYS = {"dmd_start_steps": 250, "dmd_end_steps": 1000, "dmd_steps": 4, "gen_shift": 5.0}


@pytest.fixture(autouse=True)
def _one_thread(torch_one_thread):
    yield


def release_branch_layout(b: dict, inner: int, in_channels: int, variant: str) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors the release adds to the Wan transformer (read off its model classes)."""
    d, f = b["dim"], b["ffn_dim"]
    keys: dict[str, tuple[int, ...]] = {}
    if b["conv_out_dim"] != d:
        keys |= {"controlnet.proj_in.weight": (d, b["conv_out_dim"]), "controlnet.proj_in.bias": (d,)}
    for i in range(b["num_layers"]):
        p = f"controlnet.controlnet_blocks.{i}."
        for n in ("norm1", "norm2"):
            keys |= {p + n + ".linear.weight": (3 * d, b["time_embed_dim"]), p + n + ".linear.bias": (3 * d,),
                     p + n + ".norm.weight": (d,), p + n + ".norm.bias": (d,)}
        for n in ("to_q", "to_k", "to_v", "to_out.0"):
            keys |= {p + f"self_attn.{n}.weight": (d, d), p + f"self_attn.{n}.bias": (d,)}
        keys |= {p + "self_attn.norm_q.weight": (d,), p + "self_attn.norm_k.weight": (d,),
                 p + "ffn.0.weight": (f, d), p + "ffn.0.bias": (f,), p + "ffn.2.weight": (d, f), p + "ffn.2.bias": (d,),
                 f"controlnet.proj_out.{i}.weight": (inner, d), f"controlnet.proj_out.{i}.bias": (inner,)}
    c, m, t = b["conv_out_dim"], b["mid_channels"], b["mask_downsample"]
    keys |= {"controlnet.controlnet_patch_embedding.weight": (c, in_channels, 1, 2, 2),
             "controlnet.controlnet_patch_embedding.bias": (c,),
             "controlnet.controlnet_mask_embedding.mask_proj.0.weight": (m, b["add_channels"], t, 8, 8),
             "controlnet.controlnet_mask_embedding.mask_proj.0.bias": (m,),
             "controlnet.controlnet_mask_embedding.mask_proj.1.weight": (m,),
             "controlnet.controlnet_mask_embedding.mask_proj.1.bias": (m,),
             "controlnet.controlnet_mask_embedding.mask_zero_proj.weight": (c, m, 1, 2, 2),
             "controlnet.controlnet_mask_embedding.mask_zero_proj.bias": (c,)}
    if variant != "worldstereo-camera":
        if b.get("ref_embedding"):
            keys["ref_index_embedding.weight"] = (21, inner)
        if b.get("main_camera_embedding"):
            e = b["camera_embedding_dim"]
            keys |= {"camera_embedding.0.weight": (inner // 2, e), "camera_embedding.0.bias": (inner // 2,),
                     "camera_embedding.2.weight": (inner, inner // 2), "camera_embedding.2.bias": (inner,),
                     "camera_embedding.4.weight": (inner, inner), "camera_embedding.4.bias": (inner,)}
    return keys


def base_layout() -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in WanTransformer3DModel(**BASE_KW).state_dict().items()}


def release_config(variant: str, branch: dict | None = None) -> dict:
    cfg = {"base_model": "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "controlnet_cfg": {**BRANCH, **VARIANT_CFG[variant],
           **(branch or {})}, "nframe": 21, "latent_cond_mode": "full_vae", "freeze_backbone": False}
    return cfg | (DMD_KEYS if variant == "worldstereo-memory-dmd" else {})


def random_checkpoint(layout: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(s, generator=g) * 0.2).contiguous() for k, s in layout.items()}


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    """A diffusers-layout base folder: tiny Wan I2V transformer + tiny Wan VAE (no encoders)."""
    root = tmp_path_factory.mktemp("base")
    torch.manual_seed(0)
    WanTransformer3DModel(**BASE_KW).save_pretrained(root / "transformer")
    AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                     temperal_downsample=[False, True, True]).save_pretrained(root / "vae")
    return root


def write_variant(root: Path, variant: str, tensors: dict[str, torch.Tensor], cfg: dict | None = None) -> Path:
    folder = root / variant
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg or release_config(variant)))
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


@pytest.mark.parametrize("variant", list(VARIANT_CFG))
@pytest.mark.parametrize("conv_out_dim", [INNER, 20])
def test_parameter_names_and_shapes_equal_the_release_layout(variant, conv_out_dim):
    branch = {**BRANCH, **VARIANT_CFG[variant], "conv_out_dim": conv_out_dim}
    model = WorldStereoTransformer(**BASE_KW)
    model.attach_branch(BranchConfig(**branch), variant)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == base_layout() | release_branch_layout(branch, INNER, 36, variant)


def test_full_size_model_has_the_release_layout_and_the_counts_benchmarks_quote():
    """At Wan2.1-I2V-14B size (built on the meta device: no memory) with bench_cuda's assumed branch:
    diffusers' own base layout + the release branch layout written out above, and BENCHMARKS.md's counts."""
    from benchmarks.bench_cuda import FULL_BRANCH, WAN_14B

    with torch.device("meta"):
        model = WorldStereoTransformer(**WAN_14B)
        model.attach_branch(BranchConfig(**FULL_BRANCH), "worldstereo-memory-dmd")
        base = WanTransformer3DModel(**WAN_14B)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    want = {k: tuple(v.shape) for k, v in base.state_dict().items()}
    assert ours == want | release_branch_layout(FULL_BRANCH, 5120, 36, "worldstereo-memory-dmd")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert (count(base), count(model.controlnet), count(model)) == (16_394_878_784, 1_841_701_056, 18_276_039_680)


@pytest.mark.parametrize("variant", list(VARIANT_CFG))
def test_release_layout_checkpoint_loads_with_nothing_missing_or_unexpected(variant, tmp_path):
    cfg = parse_release_config(release_config(variant), Path("config.json"), variant)
    layout = base_layout() | release_branch_layout(release_config(variant)["controlnet_cfg"], INNER, 36, variant)
    ckpt = random_checkpoint(layout)
    model = WorldStereoTransformer(**BASE_KW)
    model.attach_branch(cfg.branch, variant)
    tmp = tmp_path / "model.safetensors"
    save_file(ckpt, str(tmp))
    report = load_checkpoint_into(model, tmp)
    assert (report.loaded, report.from_base, report.unexpected) == (len(layout), 0, [])
    assert report.unused == (["ref_index_embedding.weight"] if variant != "worldstereo-camera" else [])
    sd = model.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in ckpt.items())
    # a branch-only checkpoint (backbone kept from the base model) reports the base tensors as such
    branch_only = {k: v for k, v in ckpt.items() if k not in base_layout()}
    save_file(branch_only, str(tmp))
    fresh = WorldStereoTransformer(**BASE_KW)
    fresh.attach_branch(cfg.branch, variant)
    report = load_checkpoint_into(fresh, tmp)
    assert (report.loaded, report.from_base) == (len(branch_only), len(base_layout()))


def test_rope_positions_reproduce_diffusers_rope_on_the_target_grid():
    model = WanTransformer3DModel(**BASE_KW)
    latents = torch.zeros(1, 36, 5, 6, 8)
    target, _ = C.stitched_token_positions([0], 5, 3, 4)
    cos, sin = rope_at(model.rope, target)
    ref_cos, ref_sin = model.rope(latents)
    assert torch.equal(cos, ref_cos) and torch.equal(sin, ref_sin)
    # and a reference token of frame k + 1 at column x takes the doubled-width grid's column 4 + x
    _, refs = C.stitched_token_positions([2], 5, 3, 4)
    wide_cos, _ = model.rope(torch.zeros(1, 36, 5, 6, 16))
    cos_ref, _ = rope_at(model.rope, refs)
    assert torch.equal(cos_ref[0, 1 * 4 + 2], wide_cos[0, 3 * 3 * 8 + 1 * 8 + 4 + 2])


def test_mask_embedding_reduces_8x8_pixel_cells_to_the_patch_grid():
    emb = MaskCameraEmbedding(BranchConfig(**BRANCH))
    conv = emb.mask_proj[0]
    with torch.no_grad():  # channel 0 averages the mask over each 8 × 8 cell
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, 0] = 1 / 64
    mask = (torch.rand(3, 32, 48) > 0.5).float()
    video = torch.cat([mask[None, None], torch.zeros(1, 6, 3, 32, 48)], 1)
    assert torch.allclose(conv(video)[0, 0], C.mask_latent_coverage(mask), atol=1e-6)
    assert emb(video).shape == (1, 3 * 2 * 3, INNER)  # one token per 16 × 16 pixels = per 2 × 2 latent patch


def test_reference_inputs_must_come_one_per_reference():
    cond_kw = dict(image=torch.zeros(3, 16, 16), render=torch.zeros(21, 3, 16, 16), hole=torch.zeros(21, 16, 16),
                   K=torch.eye(3).expand(21, 3, 3), w2c=torch.eye(4).expand(21, 4, 4).clone(),
                   prompt_embeds=torch.zeros(1, 512, 32), image_embeds=torch.zeros(1, 5, 8))
    with pytest.raises(ValueError, match="one ref_index and one w2c each"):
        build_conditions(**cond_kw, reference=torch.zeros(2, 3, 16, 16), ref_index=[0, 3], w2c_ref=torch.eye(4)[None])
    ok = build_conditions(**cond_kw, reference=torch.zeros(2, 3, 16, 16), ref_index=[0, 3],
                          w2c_ref=torch.eye(4).expand(2, 4, 4).clone())
    assert ok.reference.shape == (1, 3, 2, 16, 16) and ok.camera_qt_ref.shape == (1, 2, 7)


def test_dmd_timesteps_by_hand():
    # linspace(250, 1000, 4) = 1000, 750, 500, 250 reversed; σ' = 5σ / (1 + 4σ)
    expect = [1000.0, 1000 * 3.75 / 4.0, 1000 * 2.5 / 3.0, 1000 * 1.25 / 2.0]
    assert torch.allclose(dmd_timesteps(250, 1000, 4, 5.0), torch.tensor(expect))


def tiny_conditions(n_refs: int, seed: int = 0, size: int = 32):
    g = torch.Generator().manual_seed(seed)
    n = 21
    K = torch.tensor([[30.0, 0, size / 2], [0, 30, size / 2], [0, 0, 1]]).expand(n, 3, 3)
    w2c = torch.stack([torch.eye(4)] * n)
    w2c[:, 0, 3] = -torch.linspace(0, 1, n)  # a sideways dolly
    kw = dict(image=torch.rand(3, size, size, generator=g) * 2 - 1, render=torch.rand(n, 3, size, size, generator=g) * 2 - 1,
              hole=(torch.rand(n, size, size, generator=g) > 0.7), K=K, w2c=w2c,
              prompt_embeds=torch.randn(1, 512, 32, generator=g), image_embeds=torch.randn(1, 5, 8, generator=g),
              negative_prompt_embeds=torch.randn(1, 512, 32, generator=g))
    if n_refs:
        layout = C.reference_layout([0] * 6 + [1] * 14)  # target frames 1..20 → refs beside frames 1 and 7
        kw |= dict(reference=torch.rand(n_refs, 3, size, size, generator=g) * 2 - 1, ref_index=layout.ref_index,
                   w2c_ref=w2c[[1, 7]])
    return build_conditions(**kw)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:] if len(args) > 1 else kwargs}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_socket_guard_refuses_connections(no_network):
    with pytest.raises(AssertionError, match="network access"):
        socket.create_connection(("127.0.0.1", 9))


@pytest.mark.parametrize("variant", ["worldstereo-memory-dmd"])
def test_tiny_memory_dmd_path_makes_21_frames_offline(tiny_base, tmp_path, no_network, variant):
    layout = base_layout() | release_branch_layout(release_config(variant)["controlnet_cfg"], INNER, 36, variant)
    weights = write_variant(tmp_path / "weights", variant, random_checkpoint(layout))
    t0 = time.perf_counter()
    models = load_worldstereo(weights.parent, tiny_base, variant, device="cpu",
                              with_text_encoder=False, with_image_encoder=False)
    assert models.report.line() == f"loaded {len(layout)} tensors, 0 from the base model, 0 unexpected, 1 unused at inference"
    cond = tiny_conditions(n_refs=2)
    frames = sample_keyframes(models.transformer, models.vae, cond, models.cfg, device="cpu", seed=1)
    seconds = time.perf_counter() - t0
    assert frames.shape == (21, 32, 32, 3) and frames.dtype.name == "uint8"
    assert seconds < 60, f"tiny path took {seconds:.1f} s"
    again = sample_keyframes(models.transformer, models.vae, cond, models.cfg, device="cpu", seed=1)
    assert (again == frames).all()  # seeded: the same frames
    # the conditions reach the model: other renders, other references → other frames
    other = tiny_conditions(n_refs=2, seed=5)
    cond.render, cond.hole = other.render, other.hole
    assert (sample_keyframes(models.transformer, models.vae, cond, models.cfg, device="cpu", seed=1) != frames).any()
    cond2 = tiny_conditions(n_refs=2)
    cond2.reference = other.reference
    assert (sample_keyframes(models.transformer, models.vae, cond2, models.cfg, device="cpu", seed=1) != frames).any()


@pytest.mark.parametrize("variant", ["worldstereo-camera", "worldstereo-memory"])
def test_tiny_40_step_variants_run_with_unipc_and_guidance(tiny_base, tmp_path, variant):
    from diffusers import UniPCMultistepScheduler

    layout = base_layout() | release_branch_layout(release_config(variant)["controlnet_cfg"], INNER, 36, variant)
    branch_only = {k: v for k, v in random_checkpoint(layout).items() if k not in base_layout()}
    weights = write_variant(tmp_path / "w", variant, branch_only)
    (tiny_base / "scheduler").mkdir(exist_ok=True)
    UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0,
                            num_train_timesteps=1000).save_pretrained(tiny_base / "scheduler")
    models = load_worldstereo(weights, tiny_base, variant, device="cpu", with_text_encoder=False,
                              with_image_encoder=False)
    assert models.report.from_base == len(base_layout())
    scheduler = UniPCMultistepScheduler.from_pretrained(tiny_base, subfolder="scheduler", local_files_only=True)
    cond = tiny_conditions(0 if variant == "worldstereo-camera" else 2)
    frames = sample_keyframes(models.transformer, models.vae, cond, models.cfg, scheduler=scheduler,
                              steps=3, guidance=5.0)
    assert frames.shape == (21, 32, 32, 3)


# --- bad input: one line, naming the file ------------------------------------------------------------

def _one_line(exc: InputError) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


def test_missing_weight_file_is_named(tiny_base, tmp_path):
    folder = tmp_path / "worldstereo-memory-dmd"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(release_config("worldstereo-memory-dmd")))
    with pytest.raises(InputError) as e:
        load_worldstereo(tmp_path, tiny_base, "worldstereo-memory-dmd", device="cpu", with_text_encoder=False,
                         with_image_encoder=False)
    assert _one_line(e.value).startswith(str(folder / "model.safetensors") + ": missing")


def test_config_of_another_variant_is_refused(tiny_base, tmp_path):
    layout = base_layout() | release_branch_layout(release_config("worldstereo-camera")["controlnet_cfg"], INNER, 36,
                                                   "worldstereo-camera")
    folder = write_variant(tmp_path, "worldstereo-memory-dmd", random_checkpoint(layout),
                           cfg=release_config("worldstereo-camera"))
    with pytest.raises(InputError) as e:
        load_worldstereo(tmp_path, tiny_base, "worldstereo-memory-dmd", device="cpu", with_text_encoder=False,
                         with_image_encoder=False)
    assert _one_line(e.value) == (f"{folder / 'config.json'}: this config is for worldstereo-camera, not "
                                  "worldstereo-memory-dmd: point --weights at the worldstereo-memory-dmd folder")


def test_base_model_of_the_wrong_size_is_refused(tiny_base, tmp_path):
    variant = "worldstereo-memory"
    wide = dict(BASE_KW, num_attention_heads=4)  # width 48 where the weights expect 24
    WanTransformer3DModel(**wide).save_pretrained(tmp_path / "base" / "transformer")
    (tmp_path / "base" / "vae").symlink_to(tiny_base / "vae")
    (tmp_path / "base" / "scheduler").mkdir()
    (tmp_path / "base" / "scheduler" / "scheduler_config.json").write_text("{}")
    layout = base_layout() | release_branch_layout(release_config(variant)["controlnet_cfg"], INNER, 36, variant)
    write_variant(tmp_path / "weights", variant, random_checkpoint(layout))
    with pytest.raises(InputError) as e:
        load_worldstereo(tmp_path / "weights", tmp_path / "base", variant, device="cpu", with_text_encoder=False,
                         with_image_encoder=False)
    assert _one_line(e.value) == (f"{tmp_path / 'base' / 'transformer' / 'config.json'}: base model width 48 but the "
                                  "weights need 24 (WorldStereo 2.0 is trained on Wan2.1-I2V-14B-480P)")


def test_unexpected_tensor_and_missing_base_part_are_refused(tiny_base, tmp_path):
    variant = "worldstereo-memory-dmd"
    layout = base_layout() | release_branch_layout(release_config(variant)["controlnet_cfg"], INNER, 36, variant)
    ckpt = random_checkpoint(layout) | {"controlnet.extra_head.weight": torch.zeros(2, 2)}
    folder = write_variant(tmp_path, variant, ckpt)
    with pytest.raises(InputError, match=r"1 tensors have no place .* controlnet.extra_head.weight"):
        load_worldstereo(tmp_path, tiny_base, variant, device="cpu", with_text_encoder=False, with_image_encoder=False)
    assert (folder / "model.safetensors").exists()
    with pytest.raises(InputError) as e:
        load_worldstereo(tmp_path, tiny_base, variant, device="cpu", with_image_encoder=False)
    assert _one_line(e.value) == f"{tiny_base / 'text_encoder' / 'config.json'}: missing from the base model folder"


# --- prompt and image encoders (tiny, built here) ---------------------------------------------------

def tiny_text_encoder():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "a": 3, "sunlit": 4, "kitchen": 5}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(0)
    encoder = UMT5EncoderModel(UMT5Config(vocab_size=6, d_model=BASE_KW["text_dim"], d_kv=8, d_ff=32, num_layers=1,
                                          num_heads=2)).eval()
    return tokenizer, encoder


def tiny_image_encoder():
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    model = CLIPVisionModel(CLIPVisionConfig(hidden_size=BASE_KW["image_dim"], intermediate_size=32,
                                             num_hidden_layers=3, num_attention_heads=2, image_size=32,
                                             patch_size=8)).eval()
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, do_rescale=False)
    return processor, model


def test_prompt_cleaning_and_tiny_umt5_embeddings_are_zero_past_the_prompt():
    from worldstereo.generate.worldstereo.sampling import clean_prompt, encode_prompt

    assert clean_prompt("  a&amp;amp;sunlit \n\t kitchen ") == "a&sunlit kitchen"
    tokenizer, encoder = tiny_text_encoder()
    emb = encode_prompt(tokenizer, encoder, "a sunlit   kitchen", torch.device("cpu"))
    assert emb.shape == (1, 512, 32)
    assert emb[0, :4].abs().sum(-1).gt(0).all()  # a, sunlit, kitchen, </s>
    assert torch.equal(emb[0, 4:], torch.zeros(508, 32))


def test_tiny_clip_image_context_is_the_penultimate_layer():
    import numpy as np

    from worldstereo.generate.worldstereo.sampling import encode_image

    processor, model = tiny_image_encoder()
    image = (np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)
    got = encode_image(processor, model, image, torch.device("cpu"))
    pixels = processor(images=image, return_tensors="pt").pixel_values
    assert pixels.abs().max() > 10  # uint8 values normalised without rescaling, as the release feeds CLIP
    with torch.no_grad():
        states = model(pixel_values=pixels, output_hidden_states=True).hidden_states
    assert got.shape == (1, 17, 8) and torch.allclose(got, states[-2]) and not torch.allclose(got, states[-1])


# --- the generator protocol ----------------------------------------------------------------------------

def tiny_request(tmp_path: Path, n: int = 21):
    import numpy as np

    from worldstereo.cameras import Camera, Trajectory
    from worldstereo.generate.base import GenerationRequest
    from worldstereo.memory.bank import MemoryBank
    from worldstereo.memory.retrieval import Reference

    rng = np.random.default_rng(0)
    w0, h0 = 40, 36
    K = np.array([[30.0, 0, (w0 - 1) / 2], [0, 30, (h0 - 1) / 2], [0, 0, 1]])

    def cam(x):
        c2w = np.eye(4)
        c2w[0, 3] = x
        return Camera(K, c2w, w0, h0)

    bank = MemoryBank(tmp_path / "memory_bank")
    img = lambda: (rng.random((h0, w0, 3)) * 255).astype(np.uint8)  # noqa: E731
    depth = np.ones((h0, w0), np.float32)
    bank.add(img(), depth, cam(0.0), "input", 0, 0)  # id 0
    bank.add(img(), depth, cam(0.3), "orbit", 1, 5)  # id 1
    bank.add(img(), depth, cam(0.6), "orbit", 1, 10)  # id 2
    bank.add(img(), depth, cam(0.9), "up", 2, 3)  # id 3: made at this step, not visible yet
    picks = {**{i: 1 for i in range(1, 6)}, **{i: 0 for i in range(6, 11)}, **{i: 3 for i in range(11, n)}}
    refs = [Reference(i, True, picks.get(i, 0), 1.0, 1.0, 0.0) for i in range(n)]
    traj = Trajectory([cam(0.05 * i) for i in range(n)], "right")
    return GenerationRequest(traj, None, bank, refs, 2, 2.0, (rng.random((n, h0, w0, 3)) * 255).astype(np.uint8),
                             rng.random((n, h0, w0)) > 0.6)


def test_generator_protocol_tiny_memory_dmd(tiny_base, tmp_path, no_network):
    import numpy as np

    from worldstereo.generate.worldstereo.generator import WorldStereoGenerator, WorldStereoGeneratorConfig

    variant = "worldstereo-memory-dmd"
    layout = base_layout() | release_branch_layout(release_config(variant)["controlnet_cfg"], INNER, 36, variant)
    weights = write_variant(tmp_path / "weights", variant, random_checkpoint(layout),
                            cfg=release_config(variant) | {"scale_map": [[32, 32], [32, 64]]})
    models = load_worldstereo(weights, tiny_base, variant, device="cpu", with_text_encoder=False,
                              with_image_encoder=False)
    models.tokenizer, models.text_encoder = tiny_text_encoder()
    models.image_processor, models.image_encoder = tiny_image_encoder()
    gen = WorldStereoGenerator(WorldStereoGeneratorConfig(variant, weights, tiny_base, prompt="a sunlit kitchen",
                                                          device="cpu"), models=models)
    req = tiny_request(tmp_path)
    refs = gen._references(req, 32, 32)
    # frames 1-5 retrieved entry 1, 6-10 the input (0), 11-20 entry 3 which is not visible before step 2
    assert refs["ref_index"] == [0, 5]
    expect_w2c = np.linalg.inv(np.stack([np.asarray(req.bank.entries[i].c2w) for i in (1, 0)]))
    assert np.allclose(refs["w2c_ref"].numpy(), expect_w2c)
    out = gen.generate(req)
    assert out.rgb.shape == (21, 36, 40, 3) and out.rgb.dtype == np.uint8
    assert out.depth is None and out.backend == variant
    assert "2 references; bucket 32x32" in out.notes and "0 unexpected" in out.notes
    with pytest.raises(InputError) as e:
        gen.generate(tiny_request(tmp_path / "short", n=20))
    assert _one_line(e.value) == f"{variant} makes 21 keyframes per trajectory, this one has 20: plan 21 frames for it"
