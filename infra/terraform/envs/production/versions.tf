terraform {
  required_version = ">= 1.6.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.70"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
    tls = {
      source  = "hashicorp/tls"
      version = "~> 4.0"
    }
  }

  # State in S3 (encrypted; it holds the generated secrets) with a DynamoDB lock table. Both are
  # made once per account, outside this configuration (see README). The values that differ per
  # account come from a file: terraform init -backend-config=backend.hcl (backend.hcl.example).
  backend "s3" {
    key     = "shop/production/terraform.tfstate"
    encrypt = true
    # bucket         = "<account>-terraform-state"      # in backend.hcl
    # region         = "eu-central-1"                   # in backend.hcl
    # dynamodb_table = "terraform-locks"                # in backend.hcl
    # kms_key_id     = "alias/terraform-state"          # in backend.hcl
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project     = "shop"
      Environment = "production"
      ManagedBy   = "terraform"
    }
  }
}
