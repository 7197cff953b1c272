"""Metrics: point clouds (pointcloud.py), cameras (cameras.py), images (images.py), and scene
quality without ground truth (quality.py). Definitions in docs/metrics.md."""

from worldstereo.metrics.cameras import CameraScores, ate_rmse, pairwise_auc, rot_err, score_cameras, trans_err
from worldstereo.metrics.images import lpips_or_none, lpips_status, psnr, ssim
from worldstereo.metrics.pointcloud import PointCloudScores, align_to_gt, icp_sim3, score_point_clouds
from worldstereo.metrics.quality import QualityScores, score_quality

__all__ = [
    "CameraScores", "ate_rmse", "pairwise_auc", "rot_err", "score_cameras", "trans_err",
    "lpips_or_none", "lpips_status", "psnr", "ssim",
    "PointCloudScores", "align_to_gt", "icp_sim3", "score_point_clouds",
    "QualityScores", "score_quality",
]
