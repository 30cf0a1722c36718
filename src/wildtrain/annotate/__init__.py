"""The annotation loop through a real Label Studio server: push the images the champion is least sure of, with its
predictions as pre-annotations; pull the reviewed tasks back as a new version of the source (README / docs
"annotation loop").

- `server`: `make labelstudio` / `make labelstudio-down` (Label Studio in its own venv, a plain process).
- `client`: Label Studio's REST API over urllib: every error is one line naming the URL.
- `select`: which N images to push (uncertainty, diverse, random).
- `push` / `pull`: the two commands.
"""
