# Oracle for tests/r_wilcox.rs: runs R's own wilcox.test on every case of the input
# file and prints one line per case.
#
# Input lines:  <id>;<x values, comma separated>;<y values>   (hex floats, exact)
# Output lines: <id> OK <lower> <upper> <estimate R> <estimate Kayenta> [WARN]
#               <id> ERROR <message> [WARN]
#
# "estimate Kayenta" is the root of the *continuity-corrected* W(d) found with R's
# own rank(), table() and uniroot(): Kayenta's port keeps the correction for the
# estimate, while R (>= 4.0) sets correct <- FALSE first. The function below is
# R's W(d) from stats:::wilcox.test.default with correct = TRUE.
args <- commandArgs(trailingOnly = TRUE)
lines <- readLines(args[1])
conf <- as.numeric(args[2])

kayenta_estimate <- function(x, y) {
  n.x <- length(x)
  n.y <- length(y)
  W <- function(d) {
    dr <- rank(c(x - d, y))
    NTIES.CI <- rle(sort(dr))$lengths # the counts of table(dr), only faster
    dz <- sum(dr[seq_along(x)]) - n.x * (n.x + 1) / 2 - n.x * n.y / 2
    SIGMA.CI <- sqrt((n.x * n.y / 12) * ((n.x + n.y + 1) - sum(NTIES.CI^3 - NTIES.CI) /
      ((n.x + n.y) * (n.x + n.y - 1))))
    (dz - sign(dz) * 0.5) / SIGMA.CI
  }
  uniroot(W, lower = min(x) - max(y), upper = max(x) - min(y), tol = 1e-4)$root
}

out <- character(length(lines))
for (k in seq_along(lines)) {
  parts <- strsplit(lines[k], ";", fixed = TRUE)[[1]]
  id <- parts[1]
  x <- as.numeric(strsplit(parts[2], ",", fixed = TRUE)[[1]])
  y <- as.numeric(strsplit(parts[3], ",", fixed = TRUE)[[1]])
  warned <- FALSE
  res <- tryCatch(
    withCallingHandlers({
      w <- wilcox.test(x, y, conf.int = TRUE, exact = FALSE, correct = TRUE, conf.level = conf)
      ke <- tryCatch(sprintf("%.17g", kayenta_estimate(x, y)), error = function(e) "NA")
      sprintf("%s OK %.17g %.17g %.17g %s", id, w$conf.int[1], w$conf.int[2], w$estimate, ke)
    }, warning = function(cond) {
      warned <<- TRUE
      invokeRestart("muffleWarning")
    }),
    error = function(e) sprintf("%s ERROR %s", id, gsub("[[:space:]]+", "_", conditionMessage(e)))
  )
  out[k] <- if (warned) paste(res, "WARN") else res
}
writeLines(out)
