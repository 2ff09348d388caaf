"""The atlas: merge samples, normalise, select genes, embed, integrate, cluster; integration metrics."""
