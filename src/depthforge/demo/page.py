"""The Gradio page around `DemoApp`, and serving it."""

# No ``from __future__ import annotations`` here: Gradio reads the event-data annotation (gr.SelectData) of the
# page's callbacks at run time, and gradio is imported inside build_ui (an optional extra).
from typing import Any

from depthforge.demo.app import CMAPS, MAX_UPLOAD_MB, DemoApp, example_images
from depthforge.geometry.camera import DEFAULT_HFOV_DEG
from depthforge.io import DataError


def build_ui(app: DemoApp, examples: list[str] | None = None) -> Any:
    """The Gradio page around ``app``."""
    import gradio as gr

    names = list(app.sources)

    def run(path, model, cmap, auto, vmax, flip, hfov):
        try:
            result, out = app.predict(path, model, cmap, None if auto else vmax, flip, hfov)
        except DataError as err:
            raise gr.Error(str(err)) from None
        return (result, out["slider"], out["legend"], out["files"], out["glb"], out["info"],
                "click the depth image to measure")

    def on_click(result, evt: gr.SelectData):
        if result is None:
            return "predict first"
        x, y = evt.index
        return app.click(result, x, y)

    def set_fov(result, hfov):
        if result is not None:
            app.set_fov(result, hfov)
        return result

    def do_calibrate(result, known, model, cmap, auto, vmax):
        if result is None:
            raise gr.Error("predict first, then click the point whose distance you know")
        try:
            app.calibrate(result, known)
        except ValueError as err:
            raise gr.Error(str(err)) from None
        out = app.render(result, model, cmap, None if auto else vmax)
        return result, out["slider"], out["legend"], out["files"], out["glb"], out["info"]

    def run_video(path, model, cmap, progress=gr.Progress()):
        try:
            return app.video(path, model, cmap, progress=lambda i, n: progress((i, n), desc="frames"))
        except DataError as err:
            raise gr.Error(str(err)) from None

    with gr.Blocks(title="depthforge demo") as page:
        gr.Markdown("# depthforge: monocular depth\nUpload a photo; click the depth image twice to measure a 3D "
                    f"distance. Images larger than {app.max_side} px a side are downscaled; uploads are limited to "
                    f"{MAX_UPLOAD_MB} MB; videos stop at {app.max_frames} frames.")
        state = gr.State()
        with gr.Tab("Image"):
            with gr.Row():
                with gr.Column():
                    upload = gr.File(label="image", file_types=["image"], type="filepath", elem_id="upload")
                    model = gr.Dropdown(names, value=names[0], label="model", visible=len(names) > 1)
                    cmap = gr.Dropdown(list(CMAPS), value="magma", label="colour map")
                    auto = gr.Checkbox(True, label="automatic range")
                    vmax = gr.Number(20.0, label="fixed range: maximum (m)")
                    flip = gr.Checkbox(False, label="flip TTA")
                    hfov = gr.Number(DEFAULT_HFOV_DEG, label="horizontal field of view (deg) for 3D and distances")
                    button = gr.Button("Predict depth", variant="primary", elem_id="predict")
                    if examples:
                        gr.Examples(examples, inputs=[upload], label="examples (synthetic scenes)")
                with gr.Column():
                    slider = gr.ImageSlider(label="input | depth", type="numpy", elem_id="slider")
                    bar = gr.Image(label="legend", type="numpy", interactive=False, height=90)
                    info = gr.Markdown(elem_id="info")
                    depth_view = gr.Image(label="depth (click twice to measure)", type="numpy", interactive=False,
                                          elem_id="depth")
                    measure = gr.Textbox(label="measurement", elem_id="measure", interactive=False)
                    with gr.Row():
                        known = gr.Number(label="known distance at the last click (m)")
                        calib = gr.Button("Calibrate")
                    files = gr.File(label="downloads", file_count="multiple", elem_id="files")
                    view3d = gr.Model3D(label="3D (point cloud)")
        with gr.Tab("Video"):
            video_in = gr.Video(label="clip", sources=["upload"])
            video_button = gr.Button("Depth video", elem_id="video-go")
            video_out = gr.Video(label="input | depth")
            video_note = gr.Markdown()

        outputs = [state, slider, bar, files, view3d, info, measure]
        button.click(run, [upload, model, cmap, auto, vmax, flip, hfov], outputs, api_name="predict").then(
            lambda s: s[1] if s is not None else None, [slider], [depth_view])
        depth_view.select(on_click, [state], [measure])
        hfov.change(set_fov, [state, hfov], [state])
        calib.click(do_calibrate, [state, known, model, cmap, auto, vmax],
                    [state, slider, bar, files, view3d, info]).then(
            lambda s: s[1] if s is not None else None, [slider], [depth_view])
        video_button.click(run_video, [video_in, model, cmap], [video_out, video_note], api_name="video")
    return page


def launch(app: DemoApp, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> Any:
    """Serve the page: one job at a time, a bounded queue, uploads capped, files only under the app's folder."""
    import os

    os.environ["GRADIO_TEMP_DIR"] = str(app.workdir / "gradio")  # uploads and served copies stay under it too
    page = build_ui(app, example_images(app.workdir / "examples"))
    page.queue(default_concurrency_limit=1, max_size=16)
    # quiet: Gradio's banner suggests share=True, which a command-line user cannot act on (the CLI prints the URL)
    return page.launch(server_name=host, server_port=port, max_file_size=f"{MAX_UPLOAD_MB}mb",
                       allowed_paths=[str(app.workdir)], prevent_thread_lock=not block, show_error=True, quiet=True)
