//! Canary analysis: Kayenta's NetflixACAJudge, reimplemented.
