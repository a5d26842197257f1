"""Image path of LatentLM: image sigma-VAE, class/text-conditional next-token diffusion over the latent grid,
digits / ImageFolder data, classifier-based evaluation. See docs/MULTIMODAL.md."""
