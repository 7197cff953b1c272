"""WorldStereo 2.0 transformer on diffusers' Wan I2V model, with the release's parameter names.

Module tree (what the released model.safetensors addresses; `inner` = heads × head_dim of the base):

    <WanTransformer3DModel keys>            patch_embedding, condition_embedder.*, blocks.N.*, proj_out, ...
    controlnet.proj_in                       Linear(conv_out_dim → dim), or no parameters when equal
    controlnet.controlnet_blocks.N.          norm1.linear/norm, self_attn.{to_q,to_k,to_v,norm_q,norm_k,to_out.0},
                                             norm2.linear/norm, ffn.0, ffn.2
    controlnet.proj_out.N                    Linear(dim → inner), zero-initialised
    controlnet.controlnet_patch_embedding    Conv3d(in_channels → conv_out_dim, patch)
    controlnet.controlnet_mask_embedding.    mask_proj.0 (Conv3d, stride (t, 8, 8)), mask_proj.1 (GroupNorm),
                                             mask_zero_proj (Conv3d (1, 2, 2), zero-initialised)
    camera_embedding.{0,2,4}                 memory variants with main_camera_embedding: MLP 7 → inner
    ref_index_embedding                      memory variants with ref_embedding: Embedding(21, inner), never read

Forward, for latents z [B, 36, F, h, w] (16 noisy + 4 first-frame mask + 16 image latents):
the branch embeds cat(z[:, :20], render latents) and the mask (+ Plücker) video, runs its blocks
with the main time embedding, and adds its i-th output after main block i. Memory variants also
patch-embed the reference latents with the main patch embedding and let every block's
self-attention run over [reference tokens, target tokens] jointly; reference tokens take rotary
positions to the right of the target frame they belong to (conditioning.stitched_token_positions).
Attention is torch SDPA. Importing this module imports diffusers.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed, WanTransformer3DModel

from worldstereo.generate.worldstereo.conditioning import stitched_token_positions
from worldstereo.generate.worldstereo.config import BranchConfig, Variant

RopePair = tuple[torch.Tensor, torch.Tensor]  # (cos, sin), each [1, L, 1, head_dim]


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's rotary embedding on interleaved pairs: x [B, L, H, D], cos/sin [1, L, 1, D]."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    c, s = cos[..., 0::2], sin[..., 1::2]
    return torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], -1).flatten(-2).type_as(x)


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """torch scaled-dot-product attention on [B, L, H, D] tensors."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


def _qkv(attn: nn.Module, x: torch.Tensor, rope: RopePair) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    q = attn.norm_q(attn.to_q(x)).unflatten(2, (attn.heads, -1))
    k = attn.norm_k(attn.to_k(x)).unflatten(2, (attn.heads, -1))
    v = attn.to_v(x).unflatten(2, (attn.heads, -1))
    return rotate(q, *rope), rotate(k, *rope), v


def _out(attn: nn.Module, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return attn.to_out[1](attn.to_out[0](x.flatten(2).type_as(like)))


def self_attention(attn: nn.Module, x: torch.Tensor, rope: RopePair) -> torch.Tensor:
    """Rotary self-attention with q/k RMS norms over all heads, x [B, L, C]."""
    q, k, v = _qkv(attn, x, rope)
    return _out(attn, sdpa(q, k, v), q)


def joint_self_attention(attn: nn.Module, x: torch.Tensor, x_ref: torch.Tensor, rope: RopePair,
                         rope_ref: RopePair) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-attention over [reference tokens, target tokens] at once; returns (target, reference) outputs."""
    q, k, v = _qkv(attn, x, rope)
    qr, kr, vr = _qkv(attn, x_ref, rope_ref)
    out = sdpa(torch.cat([qr, q], 1), torch.cat([kr, k], 1), torch.cat([vr, v], 1))
    out = _out(attn, out, q)
    n_ref = qr.shape[1]
    return out[:, n_ref:], out[:, :n_ref]


def rope_at(rope: WanRotaryPosEmbed, positions: torch.Tensor) -> RopePair:
    """Wan's rotary (cos, sin) [1, L, 1, D] at integer (t, y, x) positions [..., 3] (row-major order)."""
    split = [rope.t_dim, rope.h_dim, rope.w_dim]
    p = positions.reshape(-1, 3).to(rope.freqs_cos.device)
    cos = torch.cat([part[p[:, i]] for i, part in enumerate(rope.freqs_cos.split(split, dim=1))], -1)
    sin = torch.cat([part[p[:, i]] for i, part in enumerate(rope.freqs_sin.split(split, dim=1))], -1)
    return cos[None, :, None], sin[None, :, None]


class ModulatedLayerNorm(nn.Module):
    """LayerNorm whose shift, scale and gate come from the time embedding (keys: linear, norm)."""

    def __init__(self, cond_dim: int, dim: int):
        super().__init__()
        self.linear = nn.Linear(cond_dim, 3 * dim)
        self.norm = nn.LayerNorm(dim, eps=1e-5, elementwise_affine=True)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift, scale, gate = self.linear(F.silu(temb)).chunk(3, dim=1)
        return self.norm(x) * (1 + scale[:, None]) + shift[:, None], gate[:, None]


class BranchBlock(nn.Module):
    """One ControlNet block: modulated self-attention and MLP, conditioned on the time embedding."""

    def __init__(self, dim: int, ffn_dim: int, num_heads: int, time_embed_dim: int, eps: float = 1e-6):
        super().__init__()
        self.norm1 = ModulatedLayerNorm(time_embed_dim, dim)
        # diffusers' generic Attention gives the key layout (to_q, …, norm_q = RMS over all heads);
        # its forward is not used.
        self.self_attn = Attention(query_dim=dim, heads=num_heads, kv_heads=num_heads, dim_head=dim // num_heads,
                                   qk_norm="rms_norm_across_heads", eps=eps, bias=True, out_bias=True)
        self.norm2 = ModulatedLayerNorm(time_embed_dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(ffn_dim, dim))

    def forward(self, x: torch.Tensor, temb: torch.Tensor, rope: RopePair) -> torch.Tensor:
        h, gate = self.norm1(x, temb)
        x = x + gate * self_attention(self.self_attn, h, rope)
        h, gate = self.norm2(x, temb)
        return x + gate * self.ffn(h)


class MaskCameraEmbedding(nn.Module):
    """Hole mask (+ 6 Plücker channels) video [B, C, F, H, W] at pixel size → branch tokens [B, L, conv_out_dim].

    A stride-(t, 8, 8) convolution brings it to latent size, a zero-initialised stride-(1, 2, 2)
    one to the patch grid; with t > 1 the video is first padded by 3 frames in front (both ends for
    interpolation models) so 81 frames give 21 latent frames. For 21 keyframes t is 1.
    """

    def __init__(self, cfg: BranchConfig):
        super().__init__()
        t = cfg.mask_downsample
        self.temporal_pad = ((3, 3) if cfg.interp else (3, 0)) if t > 1 else None
        self.mask_proj = nn.Sequential(
            nn.Conv3d(cfg.add_channels, cfg.mid_channels, kernel_size=(t, 8, 8), stride=(t, 8, 8)),
            nn.GroupNorm(cfg.mid_channels // 8, cfg.mid_channels), nn.SiLU())
        self.mask_zero_proj = _zero(nn.Conv3d(cfg.mid_channels, cfg.conv_out_dim, kernel_size=(1, 2, 2), stride=(1, 2, 2)))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        if self.temporal_pad is not None:
            video = F.pad(video, (0, 0, 0, 0, *self.temporal_pad))
        return self.mask_zero_proj(self.mask_proj(video)).flatten(2).transpose(1, 2)


class ControlBranch(nn.Module):
    """The ControlNet branch (`controlnet.*`): render latents + mask/rays in, one residual per main block out."""

    def __init__(self, cfg: BranchConfig, in_channels: int, patch_size: tuple[int, int, int], out_dim: int):
        super().__init__()
        self.proj_in = nn.Linear(cfg.conv_out_dim, cfg.dim) if cfg.conv_out_dim != cfg.dim else nn.Identity()
        self.controlnet_blocks = nn.ModuleList(
            BranchBlock(cfg.dim, cfg.ffn_dim, cfg.num_heads, cfg.time_embed_dim) for _ in range(cfg.num_layers))
        self.proj_out = nn.ModuleList(_zero(nn.Linear(cfg.dim, out_dim)) for _ in range(cfg.num_layers))
        self.controlnet_patch_embedding = nn.Conv3d(in_channels, cfg.conv_out_dim, kernel_size=patch_size, stride=patch_size)
        self.controlnet_mask_embedding = MaskCameraEmbedding(cfg)

    def forward(self, tokens: torch.Tensor, temb: torch.Tensor, rope: RopePair) -> list[torch.Tensor]:
        x = self.proj_in(tokens)
        residuals = []
        for block, out in zip(self.controlnet_blocks, self.proj_out):
            x = block(x, temb, rope)
            residuals.append(out(x))
        return residuals


def _memory_block(block: nn.Module, x: torch.Tensor, x_ref: torch.Tensor, context: torch.Tensor,
                  temb6: torch.Tensor, rope: RopePair, rope_ref: RopePair) -> tuple[torch.Tensor, torch.Tensor]:
    """A diffusers WanTransformerBlock run on target + reference tokens: joint self-attention and the
    MLP for both, cross-attention (text + image) for the target only."""
    shift, scale, gate, c_shift, c_scale, c_gate = (block.scale_shift_table + temb6.float()).chunk(6, dim=1)

    def modulate(norm, t, sh, sc):
        return (norm(t.float()) * (1 + sc) + sh).type_as(t)

    a, a_ref = joint_self_attention(block.attn1, modulate(block.norm1, x, shift, scale),
                                    modulate(block.norm1, x_ref, shift, scale), rope, rope_ref)
    x = (x.float() + a * gate).type_as(x)
    x_ref = (x_ref.float() + a_ref * gate).type_as(x_ref)
    x = x + block.attn2(block.norm2(x.float()).type_as(x), context, None, None)
    x = (x.float() + block.ffn(modulate(block.norm3, x, c_shift, c_scale)).float() * c_gate).type_as(x)
    x_ref = (x_ref.float() + block.ffn(modulate(block.norm3, x_ref, c_shift, c_scale)).float() * c_gate).type_as(x_ref)
    return x, x_ref


class WorldStereoTransformer(WanTransformer3DModel):
    """diffusers' Wan transformer + the WorldStereo 2.0 branch (`attach_branch`) and forward.

    Build: `WorldStereoTransformer.from_pretrained(base/transformer)` (or from a config in tests),
    then `attach_branch(cfg, variant)`, then load the release's model.safetensors (loader.py).
    """

    ws_variant: Variant = "worldstereo-camera"

    def attach_branch(self, cfg: BranchConfig, variant: Variant) -> None:
        patch = tuple(self.config.patch_size)
        inner = self.config.num_attention_heads * self.config.attention_head_dim
        if cfg.time_embed_dim != inner:
            raise ValueError(f"branch time_embed_dim {cfg.time_embed_dim} != base width {inner}")
        self.ws_variant = variant
        self.branch_cfg = cfg
        self.controlnet = ControlBranch(cfg, self.config.in_channels, patch, inner)
        if cfg.conv_out_dim == inner:  # the release starts the branch embedding from the main one
            self.controlnet.controlnet_patch_embedding.load_state_dict(self.patch_embedding.state_dict())
        self.controlnet_rope = WanRotaryPosEmbed(cfg.dim // cfg.num_heads, patch, self.config.rope_max_seq_len)
        self.ref_index_embedding = None
        self.camera_embedding = None
        if variant != "worldstereo-camera":
            if cfg.ref_embedding:
                self.ref_index_embedding = _zero(nn.Embedding(21, inner))
            if cfg.main_camera_embedding:
                self.camera_embedding = nn.Sequential(
                    nn.Linear(cfg.camera_embedding_dim, inner // 2), nn.SiLU(), nn.Linear(inner // 2, inner),
                    nn.SiLU(), _zero(nn.Linear(inner, inner)))
        ref = self.patch_embedding.weight
        for name in ("controlnet", "controlnet_rope", "ref_index_embedding", "camera_embedding"):
            module = getattr(self, name)
            if module is not None:
                module.to(device=ref.device, dtype=ref.dtype)

    def _grid(self, latents: torch.Tensor) -> tuple[int, int, int]:
        p_t, p_h, p_w = self.config.patch_size
        return latents.shape[2] // p_t, latents.shape[3] // p_h, latents.shape[4] // p_w

    def _branch_tokens(self, hidden_states, render_latent, render_mask, camera_embedding) -> tuple[torch.Tensor, RopePair]:
        x = torch.cat([hidden_states[:, :20], render_latent.to(hidden_states.dtype)], dim=1)
        rope = self.controlnet_rope(x)
        tokens = self.controlnet.controlnet_patch_embedding(x).flatten(2).transpose(1, 2)
        extra = render_mask if camera_embedding is None else torch.cat([render_mask, camera_embedding], dim=1)
        return tokens + self.controlnet.controlnet_mask_embedding(extra.to(tokens.dtype)), rope

    def _pose_tokens(self, camera_qt: torch.Tensor | None, tokens_per_frame: int) -> torch.Tensor | int:
        """Per-frame camera embedding repeated over each frame's tokens, or 0 when unused."""
        if self.camera_embedding is None or camera_qt is None:
            return 0
        emb = self.camera_embedding(camera_qt.to(self.patch_embedding.weight.dtype))  # [B, F, inner]
        return emb.repeat_interleave(tokens_per_frame, dim=1)

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                encoder_hidden_states_image: torch.Tensor | None = None, *, render_latent: torch.Tensor,
                render_mask: torch.Tensor, camera_embedding: torch.Tensor | None = None,
                reference_latent: torch.Tensor | None = None, ref_index: torch.Tensor | None = None,
                camera_qt: torch.Tensor | None = None, camera_qt_ref: torch.Tensor | None = None) -> torch.Tensor:
        """Velocity [B, 16, F, h, w] for latents [B, 36, F, h, w] at `timestep` [B].

        render_latent [B, 16, F, h, w]; render_mask [B, 1, F', H, W] and camera_embedding (Plücker)
        [B, 6, F', H, W] at pixel size; memory variants: reference_latent [B, 36, R, h, w],
        ref_index [R], camera_qt [B, F, 7], camera_qt_ref [B, R, 7].
        """
        memory = self.ws_variant != "worldstereo-camera"
        if memory and (reference_latent is None or ref_index is None):
            raise ValueError(f"{self.ws_variant} needs reference_latent and ref_index")
        f, h, w = self._grid(hidden_states)
        branch_tokens, branch_rope = self._branch_tokens(hidden_states, render_latent, render_mask, camera_embedding)
        x = self.patch_embedding(hidden_states).flatten(2).transpose(1, 2)
        temb, temb6, context, image_context = self.condition_embedder(
            timestep, encoder_hidden_states, encoder_hidden_states_image, timestep_seq_len=None)
        temb6 = temb6.unflatten(1, (6, -1))
        if image_context is not None:
            context = torch.cat([image_context, context], dim=1)
        residuals = self.controlnet(branch_tokens, temb, branch_rope)
        if memory:
            target_pos, ref_pos = stitched_token_positions(ref_index.tolist(), f, h, w)
            rope, rope_ref = rope_at(self.rope, target_pos), rope_at(self.rope, ref_pos)
            x = x + self._pose_tokens(camera_qt, h * w)
            ref0 = self.patch_embedding(reference_latent.to(x.dtype)).flatten(2).transpose(1, 2)
            ref0 = ref0 + self._pose_tokens(camera_qt_ref, h * w)
            x_ref = ref0
        else:
            rope = self.rope(hidden_states)
        for i, block in enumerate(self.blocks):
            if memory:
                x, x_ref = _memory_block(block, x, x_ref if self.branch_cfg.update_ref else ref0,
                                         context, temb6, rope, rope_ref)
            else:
                x = block(x, context, temb6, rope)
            if i < len(residuals):
                x = x + residuals[i]
        return self._unpatchify(x, temb, (f, h, w), hidden_states.shape[0])

    def _unpatchify(self, x: torch.Tensor, temb: torch.Tensor, grid: tuple[int, int, int], batch: int) -> torch.Tensor:
        shift, scale = (self.scale_shift_table + temb.unsqueeze(1)).chunk(2, dim=1)
        x = (self.norm_out(x.float()) * (1 + scale.to(x.device)) + shift.to(x.device)).type_as(x)
        x = self.proj_out(x)
        p_t, p_h, p_w = self.config.patch_size
        f, h, w = grid
        x = x.reshape(batch, f, h, w, p_t, p_h, p_w, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)
