# UperNet + GroupMixFormer-B on ADE20K, 512x512 crops, 160k iterations (mmsegmentation 1.x).
# The paper reports 51.2 mIoU for B with UperNet, but released no segmentation recipe: the
# schedule below (AdamW lr 6e-5, wd 0.01, batch 16 = 8 GPUs x 2, poly decay, 1.5k warmup) is the
# common Swin/ConvNeXt UperNet default, chosen by us, not by the authors.
# Use:  mim train mmsegmentation upernet_groupmixformer_base_ade20k_512x512_160k.py
#       (groupmixformer must be installed; custom_imports registers the backbone).
_base_ = [
    "mmseg::_base_/models/upernet_swin.py",
    "mmseg::_base_/datasets/ade20k.py",
    "mmseg::_base_/default_runtime.py",
    "mmseg::_base_/schedules/schedule_160k.py",
]
custom_imports = dict(imports=["groupmixformer.integrations.mmseg"], allow_failed_imports=False)

crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
checkpoint_file = "groupmixformer_base.pth"  # released ImageNet-1k weights ({'model': ...})
norm_cfg = dict(type="SyncBN", requires_grad=True)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        _delete_=True,
        type="GroupMixFormer",
        arch="base",
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,
        frozen_stages=-1,
        norm_eval=False,
        init_cfg=dict(type="Pretrained", checkpoint=checkpoint_file),
    ),
    decode_head=dict(in_channels=[200, 240, 320, 480], num_classes=150, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=320, num_classes=150, norm_cfg=norm_cfg),
)

optim_wrapper = dict(
    _delete_=True,
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type="PolyLR", eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
