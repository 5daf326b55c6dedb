-- Each evaluation's inclusion probability (the sampling policy's probability of selecting its call):
-- human-QA aggregates weight an evaluation by its inverse, so reviewing an agent more does not move
-- their average (Horvitz-Thompson / Hajek weighting). 1 for evaluations not drawn by callqa.
ALTER TABLE evaluations ADD COLUMN IF NOT EXISTS inclusion_probability Float64 DEFAULT 1;
