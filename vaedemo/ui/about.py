"""The About tab: AE against VAE as the lecture explains them (English and Korean), and the server's status."""

from __future__ import annotations

import gradio as gr

from .. import __version__, inference, jobs
from .shared import read_static


def health() -> dict:
    """/health: version, device, loaded checkpoints, training; cheap (nothing is loaded or computed)."""
    policy = jobs.training_policy()
    return {
        **inference.model_health(),
        "training_enabled": policy["enabled"],
        "training_busy": jobs.TRAINER.status()["busy"],
        "app": "vaedemo",
        "ui_version": __version__,
    }


def _fmt(value, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def yardstick_table(rows: list[dict]) -> str:
    """The shipped models side by side on the same yardsticks, with the sentence the numbers support."""
    if not rows:
        return ""
    head = (
        "| model | kind | −ELBO (nats) | read as a clear digit | class entropy | Fréchet distance | "
        "precision | recall |\n|---|---|---|---|---|---|---|---|\n"
    )
    body = "\n".join(
        f"| `{r['name']}` | {r['label']} | {_fmt(r['neg_elbo'], 1) if r['kind'] != 'gan' else '— (no p(x))'} | "
        f"{_fmt(r['confident_share'], 2)} | {_fmt(r['class_entropy'], 2)} | {_fmt(r['frechet_distance'], 1)} | "
        f"{_fmt(r['precision'], 2)} | {_fmt(r['recall'], 2)} |"
        for r in rows
    )
    note = (
        "\n\nOn 1,000 samples each, against the 1,000 validation digits. *Read as a clear digit*: the share the "
        "project's digit classifier reads with ≥ 90% confidence; *class entropy*: how evenly the ten digits "
        "come (ln 10 = 2.30 is perfectly even). The Fréchet distance is an FID for MNIST, computed on the "
        "project's own classifier's features instead of Inception's (lower is closer to real digits); "
        "precision and recall follow Kynkäänniemi et al. (2019) in the same features, with k = 3: precision "
        "is the share of samples that look like some real digit, recall the share of real digits the samples "
        "come near."
    )
    return "#### The shipped models on one yardstick\n\n" + head + body + note + verdict(rows)


def verdict(rows: list[dict]) -> str:
    """One sentence the figures support, comparing the best VAE with the GAN (when both are there)."""
    gans = [r for r in rows if r["kind"] == "gan" and r["frechet_distance"] is not None]
    vaes = [r for r in rows if r["kind"] != "gan" and r["neg_elbo"] is not None and r["frechet_distance"] is not None]
    if not gans or not vaes:
        return ""
    gan, vae = gans[0], min(vaes, key=lambda r: r["frechet_distance"])
    sharper = gan["frechet_distance"] < vae["frechet_distance"]
    clearer = (gan["confident_share"] or 0) > (vae["confident_share"] or 0)
    if sharper and clearer:
        lead = (
            f"`{gan['name']}`'s samples are closer to real digits than the best VAE's (`{vae['name']}`: Fréchet "
            f"distance {gan['frechet_distance']:.1f} against {vae['frechet_distance']:.1f}) and more of them read "
            "as clear digits, but it gives no likelihood; the VAE scores every digit (−ELBO) and its codes "
            "come straight from an encoder."
        )
    elif sharper:
        lead = (
            f"`{gan['name']}`'s samples are closer to real digits in the classifier's features, though fewer "
            "read as clear digits than the best VAE's; only the VAE gives a likelihood."
        )
    else:
        lead = (
            f"Here the best VAE (`{vae['name']}`) matches or beats `{gan['name']}` on these yardsticks too, and "
            "it also gives a likelihood; the GAN gives none."
        )
    if gan["recall"] is not None and vae["recall"] is not None and gan["recall"] < vae["recall"]:
        lead += (
            f" The GAN's lower recall ({gan['recall']:.2f} against {vae['recall']:.2f}) is the cost of the game: "
            "its samples cover less of the variety of real digits."
        )
    return "\n\n**What the numbers say.** " + lead


def render() -> None:
    """Build the tab's components inside the current gr.Tab, with the /health endpoint."""
    table = yardstick_table(inference.yardsticks())
    with gr.Tabs():
        with gr.Tab("English"):
            gr.Markdown(read_static("about_en.md"))
            gr.Markdown(read_static("about_gan_en.md"), elem_id="about-gan-en")
            if table:
                gr.Markdown(table, elem_id="about-yardsticks")
        with gr.Tab("한국어"):
            gr.Markdown(read_static("about_ko.md"))
            gr.Markdown(read_static("about_gan_ko.md"), elem_id="about-gan-ko")
            if table:
                gr.Markdown(table)
    with gr.Accordion("Server status", open=False):
        health_btn = gr.Button("Check", size="sm")
        health_json = gr.JSON(label="/health")
    broken = inference.broken_checkpoints()
    if broken:
        gr.Markdown("**Checkpoints that could not be loaded:**\n\n" + "\n".join(f"- `{n}`: {why}" for n, why in broken))
    health_btn.click(health, None, health_json, api_name="health", queue=False)
