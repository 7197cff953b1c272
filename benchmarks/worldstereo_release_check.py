"""Check our WorldStereo transformer against the release's own model classes, outside this repository.

Needs a local checkout of FuchengSu/WorldStereo (not part of this project; none of its code is
copied here) and `einops` + `omegaconf` importable (e.g. `pip install --target /tmp/wsdeps einops
omegaconf antlr4-python3-runtime==4.9.3` and PYTHONPATH=/tmp/wsdeps). Builds tiny random models
of each variant with both implementations, gives them the same tensors, and prints the largest
output difference; then its camera helpers and DMD schedule against our conditioning, and its
memory-dmd pipeline against our sampling path (final latents):

    PYTHONPATH=$PWD:/tmp/wsdeps python benchmarks/worldstereo_release_check.py --release /path/to/WorldStereo

The release hard-codes its branch output width to 5120 (the 14B model); for a tiny model the
check replaces those output layers by ones of the tiny width before copying weights, which
changes no computation. Its `src.general_utils` (logging, heavy imports) and parallel state (a
CUDA device mesh) are replaced by one-process stubs.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import torch

BASE_KW = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=36, out_channels=16,
               text_dim=32, freq_dim=16, ffn_dim=32, num_layers=2, image_dim=8, added_kv_proj_dim=24,
               rope_max_seq_len=64)
BRANCH = dict(dim=16, num_heads=2, ffn_dim=32, num_layers=2, time_embed_dim=24, conv_out_dim=24, add_channels=7,
              mid_channels=16, mask_downsample=1)


def import_release(release: Path):
    log = types.ModuleType("src.general_utils")
    log.rank0_log = lambda message, level="INFO": None
    single = types.ModuleType("src.sp_utils.parallel_states")  # one process: no device mesh, no torch.distributed
    single.get_parallel_state = lambda: types.SimpleNamespace(sp=1, world_size=1, sp_rank=0, sp_enabled=False)
    sys.modules |= {"src.general_utils": log, "src.sp_utils.parallel_states": single}
    sys.path.insert(0, str(release))
    from models.worldstereo import WorldStereoModel, WorldStereoRefSModel  # the release's classes

    return WorldStereoModel, WorldStereoRefSModel


def release_model(cls, branch: dict):
    from omegaconf import OmegaConf

    model = cls(**BASE_KW, controlnet_cfg=OmegaConf.create(branch))
    model.build_controlnet(load_uni3c=False, freeze_backbone=True)
    inner = BASE_KW["num_attention_heads"] * BASE_KW["attention_head_dim"]
    model.controlnet.proj_out = torch.nn.ModuleList(torch.nn.Linear(branch["dim"], inner)
                                                    for _ in range(branch["num_layers"]))
    return model.eval()


def inputs(memory: bool, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    f, h, w = 21, 4, 6
    kw = dict(hidden_states=torch.randn(1, 36, f, h, w, generator=g), timestep=torch.tensor([637.0]),
              encoder_hidden_states=torch.randn(1, 512, 32, generator=g),
              encoder_hidden_states_image=torch.randn(1, 5, 8, generator=g),
              render_latent=torch.randn(1, 16, f, h, w, generator=g),
              render_mask=(torch.rand(1, 1, f, 8 * h, 8 * w, generator=g) > 0.5).float(),
              camera_embedding=torch.randn(1, 6, f, 8 * h, 8 * w, generator=g))
    if memory:
        kw |= dict(reference_latent=torch.randn(1, 36, 3, h, w, generator=g), ref_index=torch.tensor([0, 4, 11]),
                   camera_qt=torch.randn(1, f, 7, generator=g), camera_qt_ref=torch.randn(1, 3, 7, generator=g))
    return kw


def compare(variant: str, release_cls, extra: dict) -> float:
    from worldstereo.generate.worldstereo.config import BranchConfig
    from worldstereo.generate.worldstereo.model import WorldStereoTransformer

    branch = {**BRANCH, **extra}
    theirs = release_model(release_cls, branch)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    ours = WorldStereoTransformer(**BASE_KW)
    ours.attach_branch(BranchConfig(**branch), variant)
    ours.load_state_dict(theirs.state_dict(), strict=True)  # same names and shapes, or this raises
    ours.eval()
    kw = inputs(variant != "worldstereo-camera")
    with torch.no_grad():
        want = theirs(**kw, return_dict=False)[0]
        got = ours(**kw)
    return float((want - got).abs().max() / want.abs().max())


def compare_conditioning() -> dict[str, float]:
    """Our conditioning functions against the release's camera helpers and DMD schedule, same inputs."""
    from models import camera as release_cam  # the release's module
    from models.dmd_scheduler import FlowGeneratorScheduler
    from scipy.spatial.transform import Rotation

    from worldstereo.generate.worldstereo import conditioning as C
    from worldstereo.generate.worldstereo.sampling import dmd_timesteps

    n, h, w = 21, 24, 40
    R = torch.tensor(Rotation.random(n + 3, random_state=0).as_matrix(), dtype=torch.float32)
    w2c = torch.eye(4).repeat(n + 3, 1, 1)
    w2c[:, :3, :3] = R
    w2c[:, :3, 3] = torch.randn(n + 3, 3, generator=torch.Generator().manual_seed(0)) * 2
    tgt, ref = w2c[:n], w2c[n:]
    K = torch.tensor([[30.0, 0, 20], [0, 28, 12], [0, 0, 1]]).repeat(n, 1, 1)
    diff = {}
    ours = C.plucker_rays(K, C.normalize_cameras(tgt), h, w)[None]
    theirs = release_cam.get_camera_embedding(K, tgt, n, h, w, normalize=True, is_w2c=True)
    diff["plucker (normalised cameras)"] = float((ours - theirs).abs().max())
    t_ours, r_ours = C.normalize_cameras_with_references(tgt, ref)
    t_theirs, r_theirs = release_cam.unified_camera_normalization(tgt, ref)
    diff["joint normalisation"] = float(max((t_ours - t_theirs).abs().max(), (r_ours - r_theirs).abs().max()))
    q_theirs = release_cam.matrix_to_quaternion(t_theirs[:, :3, :3])
    diff["quaternions"] = float((C.rotation_to_quaternion(t_theirs[:, :3, :3]) - q_theirs).abs().max())
    sched = FlowGeneratorScheduler(start_timesteps=250, num_train_timesteps=1000, shift=5.0, dmd_steps=4, rank=1)
    diff["dmd timesteps"] = float((dmd_timesteps(250, 1000, 4, 5.0) - sched.timesteps).abs().max())
    return diff


def tiny_vae_and_clip():
    """A tiny random Wan VAE (8× spatial, 4× temporal) and CLIP vision model with its processor."""
    from diffusers import AutoencoderKLWan
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True]).eval()
    clip = CLIPVisionModel(CLIPVisionConfig(hidden_size=8, intermediate_size=32, num_hidden_layers=3,
                                            num_attention_heads=2, image_size=32, patch_size=8)).eval()
    proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, do_rescale=False)
    return vae, clip, proc


def compare_pipeline(memory_cls, variant: str) -> float:
    """The whole sampling path of a memory variant (first-frame condition, keyframe VAE, conditions,
    4 DMD steps, or 3 UniPC steps with CFG 5) against the release's pipeline with the same tiny
    transformer, VAE, CLIP, scheduler and noise seed: max |Δ final latents|."""
    import numpy as np
    from models.dmd_scheduler import FlowGeneratorScheduler
    from diffusers import UniPCMultistepScheduler
    from models.pipelines.pipeline_dmd_keyframe import RefKFDMDGeneratorPipeline  # the release's pipelines
    from models.pipelines.pipeline_ref_keyframe import KFPCDControllerRefPipeline
    from PIL import Image

    from worldstereo.generate.worldstereo.config import parse_release_config
    from worldstereo.generate.worldstereo.model import WorldStereoTransformer
    from worldstereo.generate.worldstereo.sampling import build_conditions, encode_image, sample_keyframes

    dmd = variant == "worldstereo-memory-dmd"
    branch = {**BRANCH, "main_camera_embedding": True, "camera_embedding_dim": 7, "ref_embedding": True,
              "update_ref": not dmd}
    theirs = release_model(memory_cls, branch)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    raw = {"base_model": "-", "controlnet_cfg": branch}
    raw |= {"dmd_start_steps": 250, "dmd_end_steps": 1000, "dmd_steps": 4, "gen_shift": 5.0} if dmd else {}
    cfg = parse_release_config(raw, Path("config.json"), variant)
    ours = WorldStereoTransformer(**BASE_KW)
    ours.attach_branch(cfg.branch, cfg.variant)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    vae, clip, proc = tiny_vae_and_clip()
    n, h, w = 21, 32, 48
    image_u8 = (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)
    w2c = torch.eye(4).repeat(n, 1, 1)
    w2c[:, 0, 3] = -torch.linspace(0, 1, n)
    K = torch.tensor([[30.0, 0, w / 2], [0, 30, h / 2], [0, 0, 1]]).repeat(n, 1, 1)
    prompt, negative = torch.randn(1, 512, 32), torch.randn(1, 512, 32)
    cond = build_conditions(torch.from_numpy(image_u8).float().permute(2, 0, 1) / 127.5 - 1,
                            torch.rand(n, 3, h, w) * 2 - 1, torch.rand(n, h, w) > 0.6, K, w2c, prompt,
                            encode_image(proc, clip, image_u8, torch.device("cpu")),
                            negative_prompt_embeds=None if dmd else negative,
                            reference=torch.rand(2, 3, h, w) * 2 - 1, ref_index=[0, 5], w2c_ref=w2c[[1, 7]])
    unipc = dict(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0, num_train_timesteps=1000)
    common = dict(tokenizer=None, text_encoder=None, image_encoder=clip, image_processor=proc, transformer=theirs, vae=vae)
    kw = dict(image=Image.fromarray(image_u8), render_video=cond.render, render_mask=cond.hole,
              camera_embedding=cond.plucker, reference_video=cond.reference, ref_index=cond.ref_index,
              camera_qt=cond.camera_qt, camera_qt_ref=cond.camera_qt_ref, prompt_embeds=prompt, height=h, width=w,
              num_frames=81, generator=torch.Generator("cpu").manual_seed(3), output_type="latent",
              latent_cond_mode="full_vae")
    with torch.no_grad():
        if dmd:
            mine = sample_keyframes(ours, vae, cond, cfg, seed=3, output="latents")
            pipe = RefKFDMDGeneratorPipeline(**common, device=torch.device("cpu"), scheduler=FlowGeneratorScheduler(
                start_timesteps=250, num_train_timesteps=1000, shift=5.0, use_timestep_transform=True, dmd_steps=4,
                rank=1))
            ref = pipe(**kw, mode="test").frames
        else:
            mine = sample_keyframes(ours, vae, cond, cfg, seed=3, output="latents", steps=3, guidance=5.0,
                                    scheduler=UniPCMultistepScheduler(**unipc))
            pipe = KFPCDControllerRefPipeline(**common, scheduler=UniPCMultistepScheduler(**unipc))
            ref = pipe(**kw, negative_prompt_embeds=negative, num_inference_steps=3, guidance_scale=5.0).frames
    return float((ref - mine).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", type=Path, required=True, help="local checkout of FuchengSu/WorldStereo")
    args = parser.parse_args()
    torch.manual_seed(0)
    camera_cls, memory_cls = import_release(args.release)
    memory = dict(main_camera_embedding=True, camera_embedding_dim=7, ref_embedding=True)
    cases = [("worldstereo-camera", camera_cls, {}),
             ("worldstereo-memory", memory_cls, memory | {"update_ref": True}),
             ("worldstereo-memory-dmd", memory_cls, memory | {"update_ref": False})]
    for variant, cls, extra in cases:
        print(f"{variant:24s} max |release - ours| / max |release| = {compare(variant, cls, extra):.2e}")
    for name, value in compare_conditioning().items():
        print(f"{name:28s} max |release - ours| = {value:.2e}")
    for variant in ("worldstereo-memory-dmd", "worldstereo-memory"):
        print(f"{variant} sampling path: max |release - ours| final latents = "
              f"{compare_pipeline(memory_cls, variant):.2e}")


if __name__ == "__main__":
    main()
